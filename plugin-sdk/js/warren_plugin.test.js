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
  const m = message('{"p": 2}', { n: int16(4), cc: ["a", "b"] });
  assert.equal(handler.handle(m).val.routingKey, "out");
  assert.equal(handler.handle(m).val.priority, 2);
  assert.deepEqual(handler.handle(message("again", { n: int16(4), cc: ["a", "b"] })), requeue());
  assert.equal(headerValue(m, "n"), 4);
  assert.throws(() => handler.init([["colour", "blue"]]), (e) => e === "unknown config key 'colour' (known: to)");
  assert.throws(() => plugin({ handle: () => undefined }).handle(message()), /returned nothing/);
  assert.throws(() => plugin({ handle: () => "maybe" }).handle(message()), /unknown verdict/);
});

test("an async handle is awaited, its verdict checked", async () => {
  const handler = plugin({ handle: async (m) => (m.text() === "x" ? "reject" : undefined) });
  assert.deepEqual(await handler.handle(message("x")), reject());
  await assert.rejects(handler.handle(message("y")), /returned nothing/);
});
