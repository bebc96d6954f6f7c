"""python-router: an example warren plugin in Python, built with componentize-py
against plugin-sdk/wit/ (world `plugin`). `plugins/examples/build` builds it
into plugins/examples/dist/python_router.wasm.

Each message body is JSON: {"route": "<routing key>", "priority": <0-255>, ...}.
A valid message is republished to the default exchange with routing key
`route` (so: to the queue of that name) and priority `priority` (absent: the
message keeps its own). When the config key `audit` is set, an extra message
`routed:<route>` goes to that queue too, with the routed message's headers
(unchanged: every type and nesting kept) plus the text header
`x-routed-to: <route>`. A body that is not JSON, or has no
usable `route` or `priority`, is rejected (dead-lettered: to the queue's
dead-letter exchange, or to `<queue>.dead`) with a warning in warren's log.

Config: `audit` (optional): the queue that gets one audit message per routed
message. Any other key refuses the config.
"""

import json
from typing import List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Header,
    HeaderValue_Text,
    Level,
    Message,
    Outgoing,
    Properties,
    Republish,
    Verdict,
    Verdict_Reject,
    Verdict_Republish,
)

KNOWN_KEYS = ("audit",)

# The `audit` config value, kept by `init`. Module state, not an attribute:
# componentize-py makes a new `Handler` object for every call, while the
# module lives as long as the instance.
audit: Optional[str] = None


def no_properties() -> Properties:
    """Properties with nothing set: warren publishes these persistent."""
    return Properties(
        content_type=None,
        content_encoding=None,
        headers=[],
        priority=None,
        correlation_id=None,
        reply_to=None,
        expiration=None,
        message_id=None,
        timestamp=None,
        kind=None,
        user_id=None,
        app_id=None,
        delivery_mode=None,
    )


def parse(body: bytes) -> Union[Tuple[str, Optional[int]], str]:
    """The route and priority of a body, or a string saying what is wrong with it."""
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return f"body is not JSON: {e}"
    if not isinstance(request, dict):
        return "body is not a JSON object"
    route = request.get("route")
    if not isinstance(route, str) or route == "":
        return 'body has no "route" string'
    priority = request.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255
    ):
        return f'"priority" must be an integer from 0 to 255, not {json.dumps(priority)}'
    return route, priority


class Handler(exports.Handler):
    """The exported `handler` interface."""

    def init(self, config: List[Tuple[str, str]]) -> None:
        """Keeps the config; an unknown key refuses it (raising `Err` is the `err` of `result`)."""
        global audit
        for key, value in config:
            if key not in KNOWN_KEYS:
                raise Err(
                    f"python-router: unknown config key '{key}' (known: {', '.join(KNOWN_KEYS)})"
                )
            if key == "audit":
                audit = value

    def handle(self, message: Message) -> Verdict:
        parsed = parse(message.body)
        if isinstance(parsed, str):
            host.log(Level.WARN, f"rejected: {parsed}")
            return Verdict_Reject()
        route, priority = parsed
        if audit is not None:
            properties = no_properties()
            # Headers as warren gave them (flat: see `header-value` in the WIT),
            # plus one of ours.
            properties.headers = list(message.properties.headers)
            properties.headers.append(
                Header(key="x-routed-to", value=HeaderValue_Text(route), nested=[])
            )
            host.publish(
                Outgoing(
                    exchange="",
                    routing_key=audit,
                    body=f"routed:{route}".encode(),
                    properties=properties,
                )
            )
        host.log(Level.INFO, f"routed to {route}")
        return Verdict_Republish(
            Republish(exchange="", routing_key=route, priority=priority, body=None, headers=None)
        )
