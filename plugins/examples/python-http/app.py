"""python-http: an example warren plugin in Python that sends HTTP requests,
through componentize-py's wasi:http bindings (world `plugin-http` of
plugin-sdk/wit/) and `warren_plugin.fetch`. `plugins/examples/build` builds it
into plugins/examples/dist/python_http.wasm.

Each message body is a URL. The plugin GETs it and republishes the result, as
JSON, to the queue named by the config key `to`: {"url", "status", "body"} for
a response (any status), {"url", "error"} when there is none — the wasi:http
error code, `HttpRequestDenied` for a host outside the plugin's allowed_hosts.
"""

import warren_plugin as warren

to = "fetched"


def init(config: warren.Config) -> None:
    global to
    to = config.only("to").require("to")


def handle(message: warren.Message) -> warren.Verdict:
    url = message.text.strip()
    try:
        response = warren.fetch(url)
        result = {"url": url, "status": response.status, "body": response.text}
    except warren.HttpError as e:
        warren.log.warn(f"GET {url}: {e}")
        result = {"url": url, "error": e.code}
    return warren.republish(to, body=result)


Handler = warren.handler(handle, init=init)
