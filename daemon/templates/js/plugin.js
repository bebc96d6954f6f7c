// {{name}}: a warren plugin in JavaScript. Each message is republished to the
// queue named by the config key `to` (default `{{name}}.out`), with its
// headers plus `x-handled-by: {{name}}`; a message with an empty body is
// rejected (dead-lettered). Any other config key refuses the config.
//
// Build: npm install && npm run build
// Test:  warren plugin test {{module}}.wasm CASES.toml

import { log } from "warren:plugin/host@{{contract}}";
import { header, plugin, reject, republish } from "./warren_plugin.js";

let to = "{{name}}.out";

export const handler = plugin({
  init(config) {
    to = config.only("to").get("to") ?? to;
  },

  handle(message) {
    if (message.body.length === 0) {
      log("warn", "empty body: rejected");
      return reject();
    }
    log("info", `forwarding ${message.body.length} bytes to ${to}`);
    const headers = [...message.properties.headers, header("x-handled-by", "{{name}}")];
    return republish(to, { headers });
  },
});
