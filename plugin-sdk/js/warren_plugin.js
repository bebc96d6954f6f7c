// Helpers for warren plugins in JavaScript (componentize-js): what the Rust SDK
// gives, over the plain objects componentize-js maps warren's WIT to.
//
//   import { log } from "warren:plugin/host@0.3.0";
//   import { plugin, republish, reject } from "./warren_plugin.js";
//
//   export const handler = plugin({
//     handle(message) {
//       if (message.body.length === 0) return reject();
//       log("info", `routing ${message.text()}`);
//       return republish("orders", { priority: 5 });
//     },
//   });
//
// - verdicts: ack(), reject(), requeue(), republish(routingKey, {...});
// - messages to publish: outgoing(routingKey, body, {...}), reply(message, body);
// - properties({...}): every AMQP property absent unless given;
// - headers with their AMQP types: header(key, value) maps JS values (strings,
//   integers as 64-bit, other numbers as doubles, booleans, BigInt, Uint8Array,
//   null, arrays, objects) and typed ones (int16(3), float32(1.5),
//   decimal(2, 1234), timestamp(...), ...); headerValue(message, key) reads one;
// - plugin({ init, handle }): the `handler` object to export. `init` gets the
//   config as a Map with require() and only(); an Error thrown refuses it.
//   `handle` gets the message with text(), json() and header(key) added, and
//   may return a verdict or its name ("ack", ...); an `async handle` may
//   `await fetch(...)` (warren allows only the plugin's allowed_hosts).
//   (Since contract warren:plugin@0.3.0 warren lends the message as a
//   `delivery` resource; the wrapper reads it whole, once, with its
//   message() method before `handle` runs, so the message stays valid after
//   an `await` and after `handle` returns, as before.)
//
// It imports nothing from warren, so it runs under `node --test` too. It lives
// in warren's repo (plugin-sdk/js/); `warren plugin new NAME --lang js` copies
// it into a new project.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// --- verdicts ---------------------------------------------------------------

/** Done: acknowledge the message. */
export const ack = () => ({ tag: "ack" });
/** Refuse it for good: dead-lettered. */
export const reject = () => ({ tag: "reject" });
/** Give it back to the queue. */
export const requeue = () => ({ tag: "requeue" });

/**
 * Republish the message to `routingKey` on `exchange` (default: the default
 * exchange), then ack it. Undefined `priority`, `body`, `headers` keep the
 * message's own; `body` may be bytes, text or JSON-able; `headers` an object
 * or a list of headers.
 */
export function republish(routingKey, { exchange = "", priority, body, headers: h } = {}) {
  return {
    tag: "republish",
    val: {
      exchange,
      routingKey,
      priority,
      body: body === undefined ? undefined : bytes(body),
      headers: h === undefined ? undefined : headers(h),
    },
  };
}

// --- headers ----------------------------------------------------------------

const typed = (tag) => (val) => ({ tag, val });
/** Typed header values: `header("n", int16(3))`. */
export const int8 = typed("int8");
export const uint8 = typed("uint8");
export const int16 = typed("int16");
export const uint16 = typed("uint16");
export const int32 = typed("int32");
export const uint32 = typed("uint32");
export const int64 = (v) => ({ tag: "int64", val: BigInt(v) });
export const float32 = typed("float32");
export const float64 = typed("float64");
export const timestamp = (seconds) => ({ tag: "timestamp", val: BigInt(seconds) });
export const textBytes = typed("text-bytes");
export const voidValue = () => ({ tag: "void" });
/** An AMQP decimal, `value` / 10^`scale`: decimal(2, 1234) is 12.34. */
export const decimal = (scale, value) => ({ tag: "decimal", val: { scale, value } });

const SCALAR_TAGS = new Set([
  "text", "text-bytes", "bytes", "boolean", "int8", "uint8", "int16", "uint16", "int32",
  "uint32", "int64", "float32", "float64", "decimal", "timestamp", "void",
]);

function flatten(value, nested) {
  if (value !== null && typeof value === "object" && SCALAR_TAGS.has(value.tag)) {
    return value;
  }
  switch (typeof value) {
    case "string":
      return { tag: "text", val: value };
    case "boolean":
      return { tag: "boolean", val: value };
    case "bigint":
      return { tag: "int64", val: value };
    case "number":
      return Number.isSafeInteger(value)
        ? { tag: "int64", val: BigInt(value) }
        : { tag: "float64", val: value };
  }
  if (value === null || value === undefined) {
    return { tag: "void" };
  }
  if (value instanceof Uint8Array) {
    return { tag: "bytes", val: value };
  }
  const index = nested.length;
  nested.push(null);
  if (Array.isArray(value)) {
    nested[index] = { tag: "array", val: value.map((v) => flatten(v, nested)) };
    return { tag: "array", val: index };
  }
  if (typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => [k, flatten(v, nested)]);
    nested[index] = { tag: "table", val: entries };
    return { tag: "table", val: index };
  }
  throw new TypeError(`header value of type ${typeof value} has no AMQP type`);
}

/**
 * A header: strings are text, safe integers and BigInts 64-bit integers, other
 * numbers doubles, booleans, Uint8Array a byte array, null void, arrays and
 * objects nest; int16(3), float32(1.5), decimal(2, 1234), ... for other types.
 */
export function header(key, value) {
  const nested = [];
  return { key, value: flatten(value, nested), nested };
}

/** Headers from an object (or a list of headers, kept as they are). */
export function headers(h) {
  if (h === undefined || h === null) return [];
  if (Array.isArray(h)) return h;
  return Object.entries(h).map(([k, v]) => header(k, v));
}

/** A header's value as JS: scalars as their `val`, void as null, arrays and tables nested. */
export function valueOf(h) {
  const resolve = (v, depth) => {
    if (depth > 64) throw new Error(`header ${h.key}: nested deeper than 64 levels`);
    if (v.tag === "array" || v.tag === "table") {
      const container = h.nested[v.val];
      if (container.tag === "array") return container.val.map((x) => resolve(x, depth + 1));
      return Object.fromEntries(container.val.map(([k, x]) => [k, resolve(x, depth + 1)]));
    }
    return v.tag === "void" ? null : v.val;
  };
  return resolve(h.value, 0);
}

/** The value of the first header of `message` named `key` (see valueOf), or `fallback`. */
export function headerValue(message, key, fallback = undefined) {
  const found = message.properties.headers.find((h) => h.key === key);
  return found === undefined ? fallback : valueOf(found);
}

// --- properties and messages ---------------------------------------------------

const PROPERTY_FIELDS = [
  "contentType", "contentEncoding", "priority", "correlationId", "replyTo", "expiration",
  "messageId", "timestamp", "kind", "userId", "appId", "deliveryMode",
];

/**
 * AMQP properties with every field absent but those given (camelCase, as
 * componentize-js names them: contentType, priority, correlationId, replyTo,
 * kind, ...). Absent deliveryMode: warren publishes persistent.
 */
export function properties({ headers: h, ...fields } = {}) {
  const unknown = Object.keys(fields).filter((f) => !PROPERTY_FIELDS.includes(f));
  if (unknown.length > 0) throw new TypeError(`unknown properties: ${unknown.join(", ")}`);
  const out = { headers: headers(h) };
  for (const name of PROPERTY_FIELDS) out[name] = fields[name];
  if (typeof out.timestamp === "number") out.timestamp = BigInt(out.timestamp);
  return out;
}

function bytes(body) {
  if (body instanceof Uint8Array) return body;
  if (typeof body === "string") return encoder.encode(body);
  return encoder.encode(JSON.stringify(body));
}

/**
 * A message to publish: to `routingKey` on `exchange` (default: the default
 * exchange, where the routing key is a queue). `body`: bytes, text, or
 * anything else as JSON; the rest as in `properties`.
 */
export function outgoing(routingKey, body, { exchange = "", ...props } = {}) {
  return { exchange, routingKey, body: bytes(body), properties: properties(props) };
}

/** A reply to `message`: to its replyTo queue, with its correlationId. */
export function reply(message, body, props = {}) {
  const { replyTo, correlationId } = message.properties;
  if (!replyTo) throw new Error("the message has no replyTo");
  return outgoing(replyTo, body, { correlationId, ...props });
}

/** The message with text(), json() and header(key) added. */
function enrich(message) {
  return Object.assign(Object.create(message), {
    text: () => decoder.decode(message.body),
    json: () => JSON.parse(decoder.decode(message.body)),
    header: (key, fallback) => headerValue(message, key, fallback),
  });
}

/** The plugin's config: a Map of strings, with require() and only(). */
export class Config extends Map {
  /** The value of `key`, or an Error naming it. */
  require(key) {
    if (!this.has(key)) throw new Error(`config key '${key}' is required`);
    return this.get(key);
  }

  /** Refuses any key not in `known`, naming it. */
  only(...known) {
    for (const key of this.keys()) {
      if (!known.includes(key)) {
        throw new Error(`unknown config key '${key}' (known: ${known.join(", ")})`);
      }
    }
    return this;
  }
}

const NAMED = { ack, reject, requeue };

function verdictOf(verdict) {
  if (typeof verdict === "string") {
    if (!(verdict in NAMED)) throw new Error(`unknown verdict ${JSON.stringify(verdict)}`);
    return NAMED[verdict]();
  }
  if (verdict === undefined || verdict === null) {
    throw new Error("handle returned nothing: return a verdict (ack(), reject(), ...)");
  }
  return verdict;
}

/**
 * The `handler` object a plugin exports: `export const handler = plugin({ init, handle })`.
 * An Error thrown by `init` refuses the config with its message. `handle` may
 * return a verdict or its name, or be `async` (to `await fetch(...)`):
 * componentize-js runs the event loop until the promise settles.
 */
export function plugin({ init, handle }) {
  return {
    init(config) {
      if (!init) return;
      try {
        init(new Config(config));
      } catch (e) {
        throw e instanceof Error ? e.message : String(e);
      }
    },
    // `delivery` is the resource warren lends for this call (contract 0.3.0):
    // read the whole record from it now, once, before any `await`, so that
    // the message does not depend on the borrow.
    handle(delivery) {
      const verdict = handle(enrich(delivery.message()));
      return verdict instanceof Promise ? verdict.then(verdictOf) : verdictOf(verdict);
    },
  };
}
