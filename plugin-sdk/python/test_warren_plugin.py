"""Tests of warren_plugin, the Python helper module, on the generated bindings."""

import os
import subprocess
import sys

import pytest
from componentize_py_types import Err
from wit_world.imports import delivery, host, types

import conftest
import warren_plugin as warren


def message(body=b"", headers=None, **props):
    return types.Message(
        body=body, exchange="", routing_key="q", queue="q", redelivered=False,
        delivery_count=None, properties=warren.properties(headers, **props))


class Delivery(delivery.Delivery):
    """A fake of the `delivery` resource warren lends to `handle` (contract
    0.3.0): it serves the parts of `record`, counts the calls, and, like a
    borrow, refuses any once `end()` has been called (when `handle` returned)."""

    def __init__(self, record):
        self.record, self.calls, self.lent = record, [], True

    def end(self):
        self.lent = False

    def _read(self, part):
        if not self.lent:
            raise RuntimeError(f"delivery.{part}() after handle returned")
        self.calls.append(part)

    def body(self):
        self._read("body")
        return self.record.body

    def exchange(self):
        self._read("exchange")
        return self.record.exchange

    def routing_key(self):
        self._read("routing_key")
        return self.record.routing_key

    def queue(self):
        self._read("queue")
        return self.record.queue

    def redelivered(self):
        self._read("redelivered")
        return self.record.redelivered

    def delivery_count(self):
        self._read("delivery_count")
        return self.record.delivery_count

    def properties(self):
        self._read("properties")
        return self.record.properties

    def header(self, key):
        self._read("header")
        return next((h for h in self.record.properties.headers if h.key == key), None)

    def message(self):
        self._read("message")
        return self.record


def lend(record):
    """What warren passes to `handle`: `record` lent as a delivery."""
    return Delivery(record)


def test_verdicts():
    assert warren.ACK == types.Verdict_Ack()
    assert warren.REJECT == types.Verdict_Reject()
    assert warren.REQUEUE == types.Verdict_Requeue()
    verdict = warren.republish("out", priority=7)
    assert verdict == types.Verdict_Republish(types.Republish(
        exchange="", routing_key="out", priority=7, body=None, headers=None))
    changed = warren.republish("out", exchange="ex", body={"a": 1}, headers={"n": 2})
    assert changed.value.body == b'{"a": 1}'
    assert changed.value.headers == [types.Header(key="n", value=types.HeaderValue_Int64(2), nested=[])]


def test_properties_default_to_absent():
    p = warren.properties()
    assert p.headers == []
    assert all(getattr(p, f) is None for f in warren._PROPERTY_FIELDS)
    p = warren.properties({"t": "x"}, correlation_id="42", kind="order", delivery_mode=1)
    assert (p.correlation_id, p.kind, p.delivery_mode) == ("42", "order", 1)
    assert p.headers[0].value == types.HeaderValue_Text("x")
    with pytest.raises(TypeError, match="unknown properties: colour"):
        warren.properties(colour="blue")


def test_headers_keep_their_types_and_nesting():
    h = warren.header("x-death", [{"count": 1, "queues": ["q"]}])
    assert h.value == types.HeaderValue_Array(0)
    assert h.nested == [
        types.Container_Array([types.HeaderValue_Table(1)]),
        types.Container_Table([("count", types.HeaderValue_Int64(1)), ("queues", types.HeaderValue_Array(2))]),
        types.Container_Array([types.HeaderValue_Text("q")]),
    ]
    assert warren.value_of(h) == [{"count": 1, "queues": ["q"]}]
    typed = {
        "i16": warren.int16(3), "f32": warren.float32(1.5), "d": warren.decimal(2, 1234),
        "t": warren.timestamp(1700000000), "b": b"\x00\xff", "v": None, "ok": True, "x": 2.5,
    }
    hs = warren.headers(typed)
    assert [h.value for h in hs] == [
        types.HeaderValue_Int16(3), types.HeaderValue_Float32(1.5),
        types.HeaderValue_Decimal(types.Decimal(scale=2, value=1234)),
        types.HeaderValue_Timestamp(1700000000), types.HeaderValue_Bytes(b"\x00\xff"),
        types.HeaderValue_Void(), types.HeaderValue_Boolean(True), types.HeaderValue_Float64(2.5),
    ]
    assert warren.value_of(hs[2]) == (2, 1234)
    with pytest.raises(TypeError, match="set has no AMQP type"):
        warren.header("s", {1, 2})


def test_outgoing_and_reply():
    out = warren.outgoing("audit", "hi", headers={"n": 1}, priority=3)
    assert (out.exchange, out.routing_key, out.body, out.properties.priority) == ("", "audit", b"hi", 3)
    request = message(b"{}", reply_to="replies", correlation_id="7")
    answer = warren.reply(request, {"status": 200})
    assert (answer.routing_key, answer.properties.correlation_id) == ("replies", "7")
    assert answer.body == b'{"status": 200}'
    with pytest.raises(ValueError, match="no reply_to"):
        warren.reply(message(), "x")


def test_message_helpers():
    m = warren.Message(message(b'{"route": "a"}', {"n": warren.int16(4), "cc": ["a", "b"]}))
    assert m.queue == "q" and m.body == b'{"route": "a"}'
    assert m.text == '{"route": "a"}'
    assert m.json() == {"route": "a"}
    assert m.header("n") == 4 and m.header("cc") == ["a", "b"]
    assert m.header("missing", "d") == "d"


def test_config():
    c = warren.Config([("to", "out"), ("n", "3")])
    assert c.require("to") == "out" and c.parse("n", int) == 3 and c.parse("m", int, 9) == 9
    with pytest.raises(ValueError, match="config key 'nope' is required"):
        c.require("nope")
    with pytest.raises(ValueError, match="config key 'to': cannot parse 'out'"):
        c.parse("to", int)
    with pytest.raises(ValueError, match="unknown config key 'n' \\(known: to\\)"):
        c.only("to")


def test_handler_wraps_init_and_handle(monkeypatch):
    seen = {}

    def init(config):
        config.only("to")
        seen["to"] = config.require("to")

    def handle(m):
        warren.log.info(f"got {m.text}")
        warren.publish(warren.outgoing(seen["to"], m.body))
        return "requeue" if m.text == "again" else warren.ACK

    logged, published = [], []
    monkeypatch.setattr(host, "log", lambda level, text: logged.append((level, text)))
    monkeypatch.setattr(host, "publish", published.append)
    Handler = warren.handler(handle, init=init)
    Handler().init([("to", "out")])
    lent = lend(message(b"x"))
    assert Handler().handle(lent) == warren.ACK
    assert lent.calls == ["message"], "the delivery is read whole, once"
    assert Handler().handle(lend(message(b"again"))) == warren.REQUEUE
    assert logged == [(types.Level.INFO, "got x"), (types.Level.INFO, "got again")]
    assert [p.routing_key for p in published] == ["out", "out"]
    with pytest.raises(Err) as refused:
        Handler().init([("colour", "blue")])
    assert refused.value.value == "unknown config key 'colour' (known: to)"
    with pytest.raises(ValueError, match="returned None"):
        warren.handler(lambda m: None)().handle(lend(message()))
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        warren.handler(lambda m: "maybe")().handle(lend(message()))


def test_handle_gets_the_same_message_as_before():
    """`handle` gets a Message over the record the delivery lends, with every
    field and helper, and valid after `handle` returns (the borrow is not)."""
    kept = []

    def handle(m):
        kept.append(m)
        return warren.ACK

    record = types.Message(
        body=b'{"route": "a"}', exchange="ex", routing_key="rk", queue="q", redelivered=True,
        delivery_count=2, properties=warren.properties(
            {"n": warren.int16(4), "cc": ["a", "b"]}, reply_to="replies", correlation_id="7"))
    lent = lend(record)
    assert warren.handler(handle)().handle(lent) == warren.ACK
    lent.end()
    [m] = kept
    assert isinstance(m, warren.Message) and m.raw is record
    assert (m.body, m.exchange, m.routing_key, m.queue, m.redelivered, m.delivery_count) == (
        b'{"route": "a"}', "ex", "rk", "q", True, 2)
    assert m.properties.reply_to == "replies"
    assert m.text == '{"route": "a"}' and m.json() == {"route": "a"}
    assert m.header("n") == 4 and m.header("cc") == ["a", "b"] and m.header("x") is None
    assert warren.reply(m, "ok").routing_key == "replies"
    assert lent.calls == ["message"]


def test_the_plugin_http_world_is_supported_too():
    """With world `plugin-http` the types module is named after its package."""
    bindings = conftest.generate("plugin-http")
    code = "import warren_plugin as w; assert w.types.__name__.endswith('warren_plugin_types')"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(bindings), str(conftest.HERE)]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
