// Tests of warren_plugin.js, the JavaScript helper module: `node --test plugin-sdk/js`.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ack, decimal, float32, header, headerValue, headers, int16, outgoing, plugin, properties,
  reject, reply, republish, requeue, timestamp, valueOf, voidValue,
} from "./warren_plugin.js";

const message = (body = "", h = {}, props = {}) => ({
  body: new TextEncoder().encode(body), exchange: "", routingKey: "q", queue: "q",
  redelivered: false, deliveryCount: undefined, properties: properties({ headers: h, ...props }),
});

// A fake of the `delivery` resource warren lends to `handle` (contract 0.3.0),
// with componentize-js's camelCase method names: it serves the parts of
// `record`, counts the calls, and, like a borrow, refuses any once `end()` has
// been called (when the export returned).
class Delivery {
  #record;
  #lent = true;
  calls = [];

  constructor(record) {
    this.#record = record;
  }

  end() {
    this.#lent = false;
  }

  #read(part) {
    if (!this.#lent) throw new Error(`delivery.${part}() after handle returned`);
    this.calls.push(part);
  }

  body() { this.#read("body"); return this.#record.body; }
  exchange() { this.#read("exchange"); return this.#record.exchange; }
  routingKey() { this.#read("routingKey"); return this.#record.routingKey; }
  queue() { this.#read("queue"); return this.#record.queue; }
  redelivered() { this.#read("redelivered"); return this.#record.redelivered; }
  deliveryCount() { this.#read("deliveryCount"); return this.#record.deliveryCount; }
  properties() { this.#read("properties"); return this.#record.properties; }
  header(key) {
    this.#read("header");
    return this.#record.properties.headers.find((h) => h.key === key);
  }
  message() { this.#read("message"); return this.#record; }
}

/** What warren passes to `handle`: the message lent as a delivery. */
const lend = (...args) => new Delivery(message(...args));

test("verdicts", () => {
  assert.deepEqual([ack(), reject(), requeue()], [{ tag: "ack" }, { tag: "reject" }, { tag: "requeue" }]);
  assert.deepEqual(republish("out", { priority: 7 }), {
    tag: "republish",
    val: { exchange: "", routingKey: "out", priority: 7, body: undefined, headers: undefined },
  });
  const changed = republish("out", { exchange: "ex", body: { a: 1 }, headers: { n: 2 } });
  assert.equal(new TextDecoder().decode(changed.val.body), '{"a":1}');
  assert.deepEqual(changed.val.headers, [{ key: "n", value: { tag: "int64", val: 2n }, nested: [] }]);
});

test("properties default to absent", () => {
  const p = properties();
  assert.deepEqual(p.headers, []);
  assert.equal(Object.keys(p).length, 13, "every field of the WIT record");
  assert.ok(Object.entries(p).every(([k, v]) => k === "headers" || v === undefined));
  const q = properties({ correlationId: "42", kind: "order", timestamp: 5 });
  assert.deepEqual([q.correlationId, q.kind, q.timestamp], ["42", "order", 5n]);
  assert.throws(() => properties({ colour: "blue" }), /unknown properties: colour/);
});

test("headers keep their types and nesting", () => {
  const h = header("x-death", [{ count: 1, queues: ["q"] }]);
  assert.deepEqual(h.value, { tag: "array", val: 0 });
  assert.deepEqual(h.nested, [
    { tag: "array", val: [{ tag: "table", val: 1 }] },
    { tag: "table", val: [["count", { tag: "int64", val: 1n }], ["queues", { tag: "array", val: 2 }]] },
    { tag: "array", val: [{ tag: "text", val: "q" }] },
  ]);
  assert.deepEqual(valueOf(h), [{ count: 1n, queues: ["q"] }]);
  const values = headers({
    i16: int16(3), f32: float32(1.5), d: decimal(2, 1234), t: timestamp(1700000000),
    b: new Uint8Array([0, 255]), v: null, w: voidValue(), ok: true, x: 2.5,
  }).map((x) => x.value);
  assert.deepEqual(values, [
    { tag: "int16", val: 3 }, { tag: "float32", val: 1.5 },
    { tag: "decimal", val: { scale: 2, value: 1234 } }, { tag: "timestamp", val: 1700000000n },
    { tag: "bytes", val: new Uint8Array([0, 255]) }, { tag: "void" }, { tag: "void" },
    { tag: "boolean", val: true }, { tag: "float64", val: 2.5 },
  ]);
  assert.throws(() => header("f", () => 1), /no AMQP type/);
});

test("outgoing and reply", () => {
  const out = outgoing("audit", "hi", { headers: { n: 1 }, priority: 3 });
  assert.deepEqual([out.exchange, out.routingKey, out.properties.priority], ["", "audit", 3]);
  assert.equal(new TextDecoder().decode(out.body), "hi");
  const answer = reply(message("{}", {}, { replyTo: "replies", correlationId: "7" }), { status: 200 });
  assert.deepEqual([answer.routingKey, answer.properties.correlationId], ["replies", "7"]);
  assert.equal(new TextDecoder().decode(answer.body), '{"status":200}');
  assert.throws(() => reply(message(), "x"), /no replyTo/);
});

test("plugin wraps init and handle", () => {
  let to;
  const handler = plugin({
    init(config) {
      to = config.only("to").require("to");
    },
    handle(m) {
      assert.equal(m.queue, "q");
      assert.equal(m.header("n"), 4);
      assert.deepEqual(m.header("cc"), ["a", "b"]);
      assert.equal(m.header("missing", "d"), "d");
      if (m.text() === "again") return "requeue";
      return republish(to, { priority: m.json().p });
    },
  });
  handler.init([["to", "out"]]);
  const lent = lend('{"p": 2}', { n: int16(4), cc: ["a", "b"] });
  assert.equal(handler.handle(lent).val.routingKey, "out");
  assert.deepEqual(lent.calls, ["message"], "the delivery is read whole, once");
  assert.equal(handler.handle(lend('{"p": 2}', { n: int16(4), cc: ["a", "b"] })).val.priority, 2);
  assert.deepEqual(handler.handle(lend("again", { n: int16(4), cc: ["a", "b"] })), requeue());
  assert.equal(headerValue(message("", { n: int16(4) }), "n"), 4);
  assert.throws(() => handler.init([["colour", "blue"]]), (e) => e === "unknown config key 'colour' (known: to)");
  assert.throws(() => plugin({ handle: () => undefined }).handle(lend()), /returned nothing/);
  assert.throws(() => plugin({ handle: () => "maybe" }).handle(lend()), /unknown verdict/);
});

test("handle gets the same message as before, valid after handle returns", () => {
  let kept;
  const handler = plugin({
    handle(m) {
      kept = m;
      return ack();
    },
  });
  const record = {
    body: new TextEncoder().encode('{"route":"a"}'), exchange: "ex", routingKey: "rk", queue: "q",
    redelivered: true, deliveryCount: 2,
    properties: properties({ headers: { n: int16(4), cc: ["a", "b"] }, replyTo: "replies", correlationId: "7" }),
  };
  const lent = new Delivery(record);
  assert.deepEqual(handler.handle(lent), ack());
  lent.end();
  assert.deepEqual(
    [kept.body, kept.exchange, kept.routingKey, kept.queue, kept.redelivered, kept.deliveryCount],
    [record.body, "ex", "rk", "q", true, 2],
  );
  assert.equal(kept.properties, record.properties);
  assert.equal(kept.text(), '{"route":"a"}');
  assert.deepEqual(kept.json(), { route: "a" });
  assert.equal(kept.header("n"), 4);
  assert.deepEqual(kept.header("cc"), ["a", "b"]);
  assert.equal(kept.header("x", "d"), "d");
  assert.equal(headerValue(kept, "n"), 4);
  assert.equal(reply(kept, "ok").routingKey, "replies");
  assert.deepEqual(lent.calls, ["message"]);
});

test("an async handle is awaited, its verdict checked", async () => {
  const handler = plugin({
    async handle(m) {
      await null;
      return m.text() === "x" && m.header("n") === 4 ? "reject" : undefined;
    },
  });
  // The message is read before the first `await`: it outlives the borrow.
  const lent = lend("x", { n: int16(4) });
  const verdict = handler.handle(lent);
  lent.end();
  assert.deepEqual(await verdict, reject());
  await assert.rejects(handler.handle(lend("y")), /returned nothing/);
});
