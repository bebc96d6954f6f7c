"""python-router: an example warren plugin in Python, built with componentize-py
against plugin-sdk/wit/ (world `plugin`) and the helper module
plugin-sdk/python/warren_plugin.py. `plugins/examples/build` builds it into
plugins/examples/dist/python_router.wasm.

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

from typing import Optional, Tuple, Union

import warren_plugin as warren

# The `audit` config value, kept by `init`. Module state, not an attribute:
# componentize-py makes a new `Handler` object for every call, while the
# module lives as long as the instance.
audit: Optional[str] = None


def parse(message: warren.Message) -> Union[Tuple[str, Optional[int]], str]:
    """The route and priority of a body, or a string saying what is wrong with it."""
    try:
        request = message.json()
    except ValueError as e:  # not UTF-8 or not JSON
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
        return f'"priority" must be an integer from 0 to 255, not {priority!r}'
    return route, priority


def init(config: warren.Config) -> None:
    """Keeps the config; an unknown key refuses it."""
    global audit
    audit = config.only("audit").get("audit")


def handle(message: warren.Message) -> warren.Verdict:
    parsed = parse(message)
    if isinstance(parsed, str):
        warren.log.warn(f"rejected: {parsed}")
        return warren.REJECT
    route, priority = parsed
    if audit is not None:
        # Headers as warren gave them (flat: see `header-value` in the WIT),
        # plus one of ours.
        headers = list(message.properties.headers) + [warren.header("x-routed-to", route)]
        warren.publish(warren.outgoing(audit, f"routed:{route}", headers=headers))
    warren.log.info(f"routed to {route}")
    return warren.republish(route, priority=priority)


Handler = warren.handler(handle, init=init)
