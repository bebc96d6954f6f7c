"""{{name}}: a warren plugin in Python. Each message is republished to the
queue named by the config key `to` (default `{{name}}.out`), with its headers
plus `x-handled-by: {{name}}`; a message with an empty body is rejected
(dead-lettered). Any other config key refuses the config.

Build: componentize-py -d wit -w plugin componentize app -o {{module}}.wasm
Test:  warren plugin test {{module}}.wasm CASES.toml
"""

import warren_plugin as warren

# Set by `init`. Module state, not attributes: componentize-py makes a new
# Handler object for every call, while the module lives as long as the instance.
to = "{{name}}.out"


def init(config: warren.Config) -> None:
    global to
    to = config.only("to").get("to", to)


def handle(message: warren.Message) -> warren.Verdict:
    if not message.body:
        warren.log.warn("empty body: rejected")
        return warren.REJECT
    warren.log.info(f"forwarding {len(message.body)} bytes to {to}")
    headers = list(message.properties.headers)
    headers.append(warren.header("x-handled-by", "{{name}}"))
    return warren.republish(to, headers=headers)


Handler = warren.handler(handle, init=init)
