//! Unit tests of the metrics.

use super::help::HELP;
use super::*;

#[test]
fn every_metric_has_its_help_text() {
    let metrics = Metrics::new();
    // A family shows once it has a series: make one of each.
    let pipeline = metrics.pipeline("p");
    pipeline.handle_seconds.observe(0.1);
    metrics.recoveries("consume").inc();
    metrics.reload("x", true);
    metrics.compiled("x", crate::plugin::cache::Source::Cached);
    metrics.config_reload(true);
    metrics.channel_reopens("p").inc();
    metrics.set_channel_open("p", true);
    metrics.pipeline_restart("p");
    metrics.set_plugin_versions([("p", "abc")]);
    metrics.set_dead_letter_depth("p", 3);
    let plugin = PluginLabels {
        plugin: "p".to_owned(),
    };
    metrics.plugin_instances.get_or_create(&plugin).set(1);
    crate::plugin::LogCounter::dropped_lines(&metrics, "x").inc();
    pipeline.confirm_seconds.observe(0.01);
    crate::plugin::egress::EgressCounter::count(
        &metrics,
        "x",
        "example.com:443",
        crate::plugin::egress::EgressResult::Allowed,
    );
    let text = metrics.render();
    let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP")).collect();
    assert_eq!(helps.len(), HELP.len(), "{text}");
    for line in helps {
        // `# HELP name text.`: a line with no text is a metric missing from HELP.
        assert!(line.split(' ').count() > 4, "{line}");
    }
}
