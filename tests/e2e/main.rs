//! End-to-end tests of warren against the real RabbitMQ broker at 127.0.0.1:5672
//! (or `WARREN_TEST_BROKER_URL`). A broker that is down fails the run; it is never skipped.
//! Every test uses its own uniquely named queues and deletes them.

// The test kit shared with the fault tests and the benches: broker, names, plugins, config
// builder, daemon, `eventually`, metrics.
#[path = "../support/mod.rs"]
mod support;
// The name the older tests use for it.
use support as harness;

// Each verdict (ack, reject, requeue, republish, extra publish, trap) observed on the broker.
mod verdicts;

// Flow control: prefetch honoured, priority order, message fields as plugins see them.
mod flow;

// The `warren` command: check on the shipped config, bad configs, publish.
mod cli;

// Sandbox limits: loops, memory, recursion, traps, oversized bodies are contained.
mod sandbox;

// Operations: metrics and admin endpoints, systemd notify, `warren plugin run`.
mod operations;

// The http-executor plugin: requests, replies, egress policy, retries.
mod http;

// The sleeper plugin: concurrency without threads, ack after sleep, kill -9 redelivery.
mod sleeper;

// Hot reload of plugins and config under load; a plugin whose init failed retried on SIGHUP.
mod reload;

// Plugin stdout and stderr in warren's log: escaped, attributed, rate limited, drops counted.
mod logs;

// Resilience: reconnects, several URLs, graceful stop, poison messages.
mod resilience;

// Plugins in Python and JavaScript (the examples), and refused contract versions.
mod languages;

// Delivery hardening: hostile messages, plugin outputs and broker refusals, counted by id.
mod hardening;

// Headers of every AMQP type, nested ones included, survive a plugin unchanged.
mod headers;

// One pipeline, one failure domain: a pipeline restarted alone, the others undisturbed.
mod domains;

// `warren dlq`: dead-letter queues listed, replayed, and a replay killed mid-way.
mod dlq;

// The compile cache: warmed by check, a second start compiles nothing, corrupt entries rebuilt.
mod cache;

// Message traces: span trees exported over OTLP, traceparent continued, log lines tagged.
mod traces;

// The status page's JSON (`/status`), and `secret_config` shown nowhere.
mod status;

// The status page in a real headless Chromium: rows appear, counts move without a reload.
mod status_page;

// Writing plugins: `plugin test` with every plugin's cases, `plugin new` -> build -> test in
// each language, the Python and JS helpers' own tests, HTTP from Python and JS under egress.
mod authoring;

// plugin-sdk/README.md: every code block built or run by a test.
mod sdk_docs;

// TLS to the broker (a node of the test's own): a CA, mutual TLS with EXTERNAL, refusals.
mod tls;
