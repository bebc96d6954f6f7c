// js-router: an example warren plugin in JavaScript, built with componentize-js
// against plugin-sdk/wit/ (world `plugin`) and the helper module
// plugin-sdk/js/warren_plugin.js. `plugins/examples/build` builds it into
// plugins/examples/dist/js_router.wasm.
//
// Each message body is JSON: {"route": "<routing key>", "priority": <0-255>, ...}.
// A valid message is republished to the default exchange with routing key
// `route` (so: to the queue of that name) and priority `priority` (absent:
// the message keeps its own). When the config key `audit` is set, an extra
// message `routed:<route>` goes to that queue too, with the routed message's
// headers (unchanged: every type and nesting kept) plus the text header
// `x-routed-to: <route>`. A body that is not JSON,
// or has no usable `route` or `priority`, is rejected (dead-lettered: to the
// queue's dead-letter exchange, or to `<queue>.dead`) with a warning in warren's log.
//
// Config: `audit` (optional): the queue that gets one audit message per
// routed message. Any other key refuses the config.

import { log, publish } from "warren:plugin/host@0.3.0";
import { header, outgoing, plugin, reject, republish } from "../../../plugin-sdk/js/warren_plugin.js";

let audit;

// The route and priority of a body, or a string saying what is wrong with it.
function parse(message) {
  let request;
  try {
    request = message.json();
  } catch (e) {
    return `body is not JSON: ${e.message}`;
  }
  if (request === null || typeof request !== "object" || Array.isArray(request)) {
    return "body is not a JSON object";
  }
  const { route, priority } = request;
  if (typeof route !== "string" || route === "") {
    return "body has no \"route\" string";
  }
  if (
    priority !== undefined &&
    !(Number.isInteger(priority) && priority >= 0 && priority <= 255)
  ) {
    return `"priority" must be an integer from 0 to 255, not ${JSON.stringify(priority)}`;
  }
  return { route, priority };
}

export const handler = plugin({
  // Keeps the config; an unknown key refuses it.
  init(config) {
    audit = config.only("audit").get("audit");
  },

  handle(message) {
    const parsed = parse(message);
    if (typeof parsed === "string") {
      log("warn", `rejected: ${parsed}`);
      return reject();
    }
    const { route, priority } = parsed;
    if (audit !== undefined) {
      // Headers as warren gave them (flat: see `header-value` in the WIT),
      // plus one of ours.
      const headers = [...message.properties.headers, header("x-routed-to", route)];
      publish(outgoing(audit, `routed:${route}`, { headers }));
    }
    log("info", `routed to ${route}`);
    return republish(route, { priority });
  },
});
