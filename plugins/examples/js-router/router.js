// js-router: an example warren plugin in JavaScript, built with componentize-js
// against plugin-sdk/wit/ (world `plugin`). `plugins/examples/build` builds it
// into plugins/examples/dist/js_router.wasm.
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

import { log, publish } from "warren:plugin/host@0.2.0";

const KNOWN_KEYS = ["audit"];

let audit = null;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// Properties with nothing set but `headers`: warren publishes these persistent.
function noProperties(headers = []) {
  return {
    contentType: undefined,
    contentEncoding: undefined,
    headers,
    priority: undefined,
    correlationId: undefined,
    replyTo: undefined,
    expiration: undefined,
    messageId: undefined,
    timestamp: undefined,
    kind: undefined,
    userId: undefined,
    appId: undefined,
    deliveryMode: undefined,
  };
}

// The route and priority of a body, or a string saying what is wrong with it.
function parse(body) {
  let request;
  try {
    request = JSON.parse(decoder.decode(body));
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

export const handler = {
  // Keeps the config; an unknown key refuses it (thrown: the `err` of `result`).
  init(config) {
    for (const [key, value] of config) {
      if (!KNOWN_KEYS.includes(key)) {
        throw `js-router: unknown config key '${key}' (known: ${KNOWN_KEYS.join(", ")})`;
      }
      if (key === "audit") {
        audit = value;
      }
    }
  },

  handle(message) {
    const parsed = parse(message.body);
    if (typeof parsed === "string") {
      log("warn", `rejected: ${parsed}`);
      return { tag: "reject" };
    }
    const { route, priority } = parsed;
    if (audit !== null) {
      publish({
        exchange: "",
        routingKey: audit,
        body: encoder.encode(`routed:${route}`),
        // Headers as warren gave them (flat: see `header-value` in the WIT),
        // plus one of ours.
        properties: noProperties([
          ...message.properties.headers,
          { key: "x-routed-to", value: { tag: "text", val: route }, nested: [] },
        ]),
      });
    }
    log("info", `routed to ${route}`);
    return {
      tag: "republish",
      val: {
        exchange: "",
        routingKey: route,
        priority,
        body: undefined,
        headers: undefined,
      },
    };
  },
};
