// js-http: an example warren plugin in JavaScript that sends HTTP requests
// with `fetch` (componentize-js over wasi:http). `plugins/examples/build`
// builds it into plugins/examples/dist/js_http.wasm.
//
// Each message body is a URL. The plugin GETs it and republishes the result,
// as JSON, to the queue named by the config key `to`: {"url", "status",
// "body"} for a response (any status), {"url", "error"} when there is none —
// what `fetch` rejected with; a host outside the plugin's allowed_hosts is
// refused by warren before any connection is made.

import { log } from "warren:plugin/host@0.3.0";
import { plugin, republish } from "../../../plugin-sdk/js/warren_plugin.js";

let to;

export const handler = plugin({
  init(config) {
    to = config.only("to").require("to");
  },

  // componentize-js runs the event loop until the returned promise settles.
  async handle(message) {
    const url = message.text().trim();
    let result;
    try {
      const response = await fetch(url);
      result = { url, status: response.status, body: await response.text() };
    } catch (e) {
      log("warn", `GET ${url}: ${e}`);
      result = { url, error: String(e) };
    }
    return republish(to, { body: result });
  },
});
