"""Helpers for warren plugins in Python (componentize-py): what the Rust SDK gives,
over the bindings componentize-py generates from warren's WIT (world `plugin`,
or `plugin-http` for a plugin that sends HTTP requests).

    import warren_plugin as warren

    def handle(message: warren.Message):
        if not message.body:
            return warren.REJECT
        warren.log.info(f"routing {message.text}")
        return warren.republish("orders", priority=5)

    Handler = warren.handler(handle)

- verdicts: ACK, REJECT, REQUEUE, republish(routing_key, ...);
- messages to publish: outgoing(routing_key, body, ...), reply(message, body);
  publish(msg) sends one (held until `handle` returns, as in every language);
- properties(...): every AMQP property absent unless given;
- headers with their AMQP types: header(key, value) maps Python values
  (str, int, float, bool, bytes, None, lists, dicts) and typed ones
  (int16(3), float32(1.5), decimal(2, 1234), timestamp(...), ...);
  message.header(key) reads one back as a Python value;
- handler(handle, init=None): the `Handler` class componentize-py exports.
  `init` gets the config as a Config (a dict with require() and parse()); an
  exception from it refuses the config. `handle` gets a Message: the WIT's
  `message` record plus .text, .json() and .header(key). (Since contract
  warren:plugin@0.3.0 warren lends the message as a `delivery` resource; the
  wrapper reads it whole, once, with its message() method, so the Message
  stays valid after `handle` returns, as before.)

This file lives in warren's repo (plugin-sdk/python/); `warren plugin new
NAME --lang python` copies it into a new project.
"""

# Every import at the top: componentize-py bundles what the module imports when
# the component is built; there is no file system to import from later.
import json
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host

try:  # world `plugin-http`: two `types` interfaces, so the names carry the package
    from wit_world.imports import warren_plugin_types as types
    from wit_world.imports import outgoing_handler as _outgoing_handler
    from wit_world.imports import wasi_http_types as _http
    from wit_world.imports.streams import StreamError_Closed as _Closed
except ImportError:  # world `plugin`: no HTTP
    from wit_world.imports import types
    _outgoing_handler = None

__all__ = [
    "ACK", "REJECT", "REQUEUE", "Config", "Message", "Verdict", "array", "bytes_value",
    "decimal", "float32", "float64", "handler", "header", "headers", "int16", "int32",
    "int64", "int8", "log", "outgoing", "properties", "publish", "reply", "republish",
    "text_bytes", "timestamp", "types", "uint16", "uint32", "uint8", "value_of", "void",
    "HttpError", "HttpResponse", "fetch",
]

Verdict = types.Verdict
ACK = types.Verdict_Ack()
REJECT = types.Verdict_Reject()
REQUEUE = types.Verdict_Requeue()

_PROPERTY_FIELDS = (
    "content_type", "content_encoding", "priority", "correlation_id", "reply_to",
    "expiration", "message_id", "timestamp", "kind", "user_id", "app_id", "delivery_mode",
)


# --- headers ----------------------------------------------------------------

def int8(v: int) -> Any: return types.HeaderValue_Int8(v)
def uint8(v: int) -> Any: return types.HeaderValue_Uint8(v)
def int16(v: int) -> Any: return types.HeaderValue_Int16(v)
def uint16(v: int) -> Any: return types.HeaderValue_Uint16(v)
def int32(v: int) -> Any: return types.HeaderValue_Int32(v)
def uint32(v: int) -> Any: return types.HeaderValue_Uint32(v)
def int64(v: int) -> Any: return types.HeaderValue_Int64(v)
def float32(v: float) -> Any: return types.HeaderValue_Float32(v)
def float64(v: float) -> Any: return types.HeaderValue_Float64(v)
def timestamp(seconds: int) -> Any: return types.HeaderValue_Timestamp(seconds)
def bytes_value(b: bytes) -> Any: return types.HeaderValue_Bytes(b)
def text_bytes(b: bytes) -> Any: return types.HeaderValue_TextBytes(b)
def void() -> Any: return types.HeaderValue_Void()


def decimal(scale: int, value: int) -> Any:
    """An AMQP decimal, `value` / 10**`scale`: decimal(2, 1234) is 12.34."""
    return types.HeaderValue_Decimal(types.Decimal(scale=scale, value=value))


class array(list):
    """A list, marked as an AMQP array (a plain list is one too)."""


_SCALARS = tuple(
    getattr(types, name) for name in dir(types)
    if name.startswith("HeaderValue_") and name not in ("HeaderValue_Array", "HeaderValue_Table")
)


def _flatten(value: Any, nested: List[Any]) -> Any:
    """The contract's flat form of `value`: containers go to `nested`, parent first."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, bool):
        return types.HeaderValue_Boolean(value)
    if isinstance(value, int):
        return types.HeaderValue_Int64(value)
    if isinstance(value, float):
        return types.HeaderValue_Float64(value)
    if isinstance(value, str):
        return types.HeaderValue_Text(value)
    if isinstance(value, (bytes, bytearray)):
        return types.HeaderValue_Bytes(bytes(value))
    if value is None:
        return types.HeaderValue_Void()
    index = len(nested)
    if isinstance(value, (list, tuple)):
        nested.append(None)
        nested[index] = types.Container_Array([_flatten(v, nested) for v in value])
        return types.HeaderValue_Array(index)
    if isinstance(value, dict):
        nested.append(None)
        entries = [(str(k), _flatten(v, nested)) for k, v in value.items()]
        nested[index] = types.Container_Table(entries)
        return types.HeaderValue_Table(index)
    raise TypeError(f"header value of type {type(value).__name__} has no AMQP type")


def header(key: str, value: Any) -> Any:
    """A header: str is text, int a 64-bit integer, float a double, bool, bytes a
    byte array, None void, lists arrays and dicts tables (nesting as deep as
    you like); int16(3), float32(1.5), decimal(2, 1234), ... for other types."""
    nested: List[Any] = []
    flat = _flatten(value, nested)
    return types.Header(key=key, value=flat, nested=nested)


def headers(mapping: Union[Dict[str, Any], List[Any], None]) -> List[Any]:
    """Headers from a dict (or a list of `Header`s, kept as they are)."""
    if mapping is None:
        return []
    if isinstance(mapping, dict):
        return [header(k, v) for k, v in mapping.items()]
    return list(mapping)


_as_headers = headers


def value_of(h: Any) -> Any:
    """A header's value as Python: text, numbers, bool, bytes, None (void), a
    decimal as (scale, value), lists for arrays and dicts for tables."""
    def resolve(v: Any, depth: int) -> Any:
        if depth > 64:
            raise ValueError(f"header {h.key!r}: nested deeper than 64 levels")
        if isinstance(v, (types.HeaderValue_Array, types.HeaderValue_Table)):
            container = h.nested[v.value]
            if isinstance(container, types.Container_Array):
                return [resolve(x, depth + 1) for x in container.value]
            return {k: resolve(x, depth + 1) for k, x in container.value}
        if isinstance(v, types.HeaderValue_Void):
            return None
        if isinstance(v, types.HeaderValue_Decimal):
            return (v.value.scale, v.value.value)
        return v.value
    return resolve(h.value, 0)


# --- properties and messages ---------------------------------------------------

def properties(headers: Union[Dict[str, Any], List[Any], None] = None, **fields: Any) -> Any:
    """AMQP properties with every field absent but those given (snake_case, as in
    the WIT: content_type, priority, correlation_id, reply_to, kind, ...).
    Absent delivery_mode: warren publishes persistent."""
    unknown = set(fields) - set(_PROPERTY_FIELDS)
    if unknown:
        raise TypeError(f"unknown properties: {', '.join(sorted(unknown))}")
    values = {name: fields.get(name) for name in _PROPERTY_FIELDS}
    return types.Properties(headers=_as_headers(headers), **values)


def _bytes(body: Union[str, bytes, Dict[str, Any], List[Any]]) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode()
    return bytes(body)


def outgoing(routing_key: str, body: Any, exchange: str = "",
             headers: Union[Dict[str, Any], List[Any], None] = None, **props: Any) -> Any:
    """A message to publish: to `routing_key` on `exchange` (empty: the default
    exchange, where the routing key is a queue). `body` is bytes, text, or a
    dict or list (sent as JSON); `props` as in `properties`."""
    return types.Outgoing(exchange=exchange, routing_key=routing_key, body=_bytes(body),
                          properties=properties(headers, **props))


def reply(message: Any, body: Any, **props: Any) -> Any:
    """A reply to `message`: to its reply_to queue, with its correlation_id."""
    reply_to = message.properties.reply_to
    if not reply_to:
        raise ValueError("the message has no reply_to")
    props.setdefault("correlation_id", message.properties.correlation_id)
    return outgoing(reply_to, body, **props)


def republish(routing_key: str, exchange: str = "", priority: Optional[int] = None,
              body: Any = None, headers: Union[Dict[str, Any], List[Any], None] = None) -> Any:
    """The republish verdict: the message (or `body`) to `routing_key` on
    `exchange`, then acked. None keeps the message's own priority, body, headers."""
    new_headers = None if headers is None else _as_headers(headers)
    return types.Verdict_Republish(types.Republish(
        exchange=exchange, routing_key=routing_key, priority=priority,
        body=None if body is None else _bytes(body), headers=new_headers))


class Message:
    """The message being handled: every field of the WIT's `message` record
    (body, queue, properties, redelivered, delivery_count, ...), plus helpers.
    `raw` is the record, as the delivery's message() returned it."""

    def __init__(self, raw: Any):
        self.raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    @property
    def text(self) -> str:
        """The body as UTF-8 text (invalid bytes replaced)."""
        return self.raw.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not)."""
        return json.loads(self.raw.body)

    def header(self, key: str, default: Any = None) -> Any:
        """The first header named `key`, as a Python value (see value_of)."""
        for h in self.raw.properties.headers:
            if h.key == key:
                return value_of(h)
        return default


class Config(dict):
    """The plugin's config table: every value a string."""

    def require(self, key: str) -> str:
        if key not in self:
            raise ValueError(f"config key '{key}' is required")
        return self[key]

    def parse(self, key: str, kind: Callable[[str], Any], default: Any = None) -> Any:
        if key not in self:
            return default
        try:
            return kind(self[key])
        except ValueError as e:
            raise ValueError(f"config key '{key}': cannot parse '{self[key]}': {e}") from e

    def only(self, *known: str) -> "Config":
        """Refuses a key not in `known`, naming it."""
        for key in self:
            if key not in known:
                raise ValueError(f"unknown config key '{key}' (known: {', '.join(known)})")
        return self


# --- the host ---------------------------------------------------------------

class _Log:
    """warren's log, tagged with the plugin and pipeline: log.info("..."), ..."""

    def write(self, level: Any, text: str) -> None:
        host.log(level, text)

    def trace(self, text: str) -> None: self.write(types.Level.TRACE, text)
    def debug(self, text: str) -> None: self.write(types.Level.DEBUG, text)
    def info(self, text: str) -> None: self.write(types.Level.INFO, text)
    def warn(self, text: str) -> None: self.write(types.Level.WARN, text)
    def error(self, text: str) -> None: self.write(types.Level.ERROR, text)


log = _Log()


def publish(message: Any) -> None:
    """Publishes an extra message (see outgoing, reply): held until `handle`
    returns, sent only if it returns normally, confirmed before the message
    being handled is settled."""
    host.publish(message)


_NAMED = {"ack": ACK, "reject": REJECT, "requeue": REQUEUE}


def handler(handle: Callable[[Message], Any],
            init: Optional[Callable[[Config], None]] = None) -> type:
    """The `Handler` class componentize-py exports: `Handler = handler(handle, init)`.

    componentize-py makes a new Handler object per call, so keep state in module
    globals (set by `init`), not on objects. `handle` may return a verdict or
    its name ("ack", "reject", "requeue")."""

    class Handler(exports.Handler):
        def init(self, config: List[Tuple[str, str]]) -> None:
            if init is None:
                return
            try:
                init(Config(config))
            except Exception as e:  # any refusal becomes the `err` of `result`
                raise Err(str(e)) from e

        def handle(self, message: Any) -> Any:
            # `message` is the `delivery` resource warren lends for this call
            # (contract 0.3.0): read the whole record from it now, once, so
            # that the Message does not depend on the borrow, which ends when
            # this method returns.
            verdict = handle(Message(message.message()))
            if isinstance(verdict, str):
                if verdict not in _NAMED:
                    raise ValueError(f"unknown verdict {verdict!r}")
                return _NAMED[verdict]
            if verdict is None:
                raise ValueError("handle returned None: return a verdict (ACK, REJECT, ...)")
            return verdict

    return Handler


# --- HTTP (world `plugin-http`) -------------------------------------------------

class HttpError(Exception):
    """A request that got no response: `code` is the wasi:http error-code case
    (`HttpRequestDenied` when warren's egress policy refused it,
    `ConnectionRefused`, `DnsError`, ...), `detail` its payload if any."""

    def __init__(self, code: Any):
        self.code = type(code).__name__.replace("ErrorCode_", "")
        self.detail = getattr(code, "value", None)
        super().__init__(self.code if self.detail is None else f"{self.code}: {self.detail}")


class HttpResponse:
    """A response read to the end: status, headers (lower-case name to value,
    repeated ones joined with ", ") and body bytes."""

    def __init__(self, status: int, headers: Dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


_CHUNK = 4096


def fetch(url: str, method: str = "GET", headers: Optional[Dict[str, str]] = None,
          body: Any = None) -> HttpResponse:
    """Sends one HTTP request through wasi:http and reads the whole response;
    raises HttpError when there is none. Needs world `plugin-http` (build with
    `-w plugin-http`); warren lets it reach only the plugin's allowed_hosts."""
    if _outgoing_handler is None:
        raise RuntimeError("fetch needs world plugin-http: build with -w plugin-http")
    http = _http
    parts = urlsplit(url)
    fields = http.Fields.from_list([(k, v.encode()) for k, v in (headers or {}).items()])
    request = http.OutgoingRequest(fields)
    methods = {"GET": http.Method_Get, "HEAD": http.Method_Head, "POST": http.Method_Post,
               "PUT": http.Method_Put, "DELETE": http.Method_Delete, "PATCH": http.Method_Patch,
               "OPTIONS": http.Method_Options}
    name = method.upper()
    request.set_method(methods[name]() if name in methods else http.Method_Other(name))
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    outgoing_body = request.body()
    if body is not None:
        data = _bytes(body)
        with outgoing_body.write() as stream:
            for start in range(0, len(data), _CHUNK):
                stream.blocking_write_and_flush(data[start:start + _CHUNK])
    http.OutgoingBody.finish(outgoing_body, None)
    try:
        future = _outgoing_handler.handle(request, None)
    except Err as e:
        raise HttpError(e.value) from None
    with future:
        with future.subscribe() as ready:
            ready.block()
        outcome = future.get()
    response = outcome.value  # Ok(Ok(response)) or Ok(Err(code)); the future is read once
    if isinstance(response, Err):
        raise HttpError(response.value)
    response = response.value
    with response:
        found: Dict[str, str] = {}
        with response.headers() as fields_in:
            for key, value in fields_in.entries():
                key = key.lower()
                text = value.decode("utf-8", errors="replace")
                found[key] = f"{found[key]}, {text}" if key in found else text
        status = response.status()
        incoming = response.consume()
        chunks = []
        with incoming.stream() as stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(64 * 1024))
                except Err as e:
                    if isinstance(e.value, _Closed):
                        break
                    raise HttpError(http.ErrorCode_HttpResponseIncomplete()) from None
        http.IncomingBody.finish(incoming).__exit__(None, None, None)
    return HttpResponse(status, found, b"".join(chunks))
