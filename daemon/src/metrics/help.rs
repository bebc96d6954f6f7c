//! The help text of every metric.

use prometheus_client::registry::{Metric, Registry};

/// Every metric's name (after the `warren_` prefix) and help text.
pub(super) const HELP: &[(&str, &str)] = &[
    ("build_info", "warren's version (value 1)"),
    (
        "plugin_instances",
        "Instances of each plugin's serving version alive, in use or idle",
    ),
    (
        "plugin_info",
        "The version (hash) of each plugin now serving (value 1)",
    ),
    (
        "publish_confirm_seconds",
        "Time from publishing a message's publishes to the broker's confirm of all of them, by pipeline",
    ),
    (
        "dead_letter_depth",
        "Messages in each pipeline's dead-letter queue (<queue>.dead), read every 10 s",
    ),
    (
        "plugin_log_lines_dropped",
        "Lines of a plugin's log, stdout and stderr dropped over its rate limit (1,000 lines a second), by plugin",
    ),
    (
        "messages",
        "Messages handled, by pipeline and verdict (ack, reject, requeue, republish, error)",
    ),
    (
        "messages_received",
        "Messages received from the queue, by pipeline",
    ),
    (
        "egress_requests",
        "HTTP requests plugins sent, by plugin, host (the allowed_hosts entry they matched, or other) and result (allowed, denied, unresolved)",
    ),
    (
        "plugin_handle_seconds",
        "Time spent in a plugin's handle, by pipeline",
    ),
    (
        "messages_in_flight",
        "Messages received and not yet settled, by pipeline",
    ),
    (
        "plugin_failures",
        "Plugin failures by pipeline and reason (trap, timeout, too_large, start)",
    ),
    (
        "publish_failures",
        "Publishes not confirmed (unroutable, nacked, timed out), by pipeline",
    ),
    (
        "settle_failures",
        "Settlements the broker connection refused with an error (the broker redelivers the message), by pipeline",
    ),
    (
        "stale_settlements",
        "Settlements not sent because the delivery's channel was gone (the broker redelivers)",
    ),
    (
        "redeliveries",
        "Deliveries with the redelivered flag set, by pipeline",
    ),
    (
        "plugin_reloads",
        "Plugin loads after start-up, by plugin and result (ok, failed)",
    ),
    (
        "plugin_compiles",
        "Plugin loads (at start and on reload), by plugin and where the machine code came from (result: compiled, or cached: from the compile cache)",
    ),
    (
        "config_reloads",
        "Config reloads (file change or SIGHUP), by result (ok, failed: refused whole)",
    ),
    (
        "broker_recoveries",
        "Lost broker connections recovered by lapin, by connection (consume, publish)",
    ),
    (
        "broker_reconnects",
        "Times warren reconnected and restarted every pipeline itself (lapin's recovery gave up, or the broker closed a channel)",
    ),
    (
        "broker_connected",
        "1 while the consuming connection to the broker is open",
    ),
    (
        "dead_lettered",
        "Messages rejected for good (to the dead-letter queue or exchange, or dropped if the pipeline opted out), by pipeline and reason",
    ),
    (
        "invalid_publishes",
        "Messages whose plugin asked to publish something invalid (too long a name, bad expiration, too many bytes, not allowed), by pipeline",
    ),
    (
        "panics",
        "Messages on which warren itself failed (a bug), settled by on_error, by pipeline",
    ),
    (
        "publish_channel_reopens",
        "Times a pipeline's publishing channel was reopened after the broker closed it",
    ),
    (
        "publish_channel_open",
        "1 while a pipeline's publishing channel is open",
    ),
    (
        "pipeline_restarts",
        "Times a pipeline was restarted alone after its channel failed (consumer timeout, queue deleted)",
    ),
];

/// Registers `metric` under `name`, with its help text from [`HELP`], and returns it (a
/// handle on the same series).
pub(super) fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, metric: M) -> M {
    let help = HELP
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, help)| help);
    registry.register(name, help, metric.clone());
    metric
}
