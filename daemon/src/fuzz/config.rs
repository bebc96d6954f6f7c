//! Fuzz target `config`: any text as `warren.toml` is parsed and validated, or refused with
//! errors that say where — never a panic.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::{corpus, corpus_dir, fuzz, mutated};
use crate::config::Config;

/// Words the config format gives meaning to: sections, keys, values of every kind, and the
/// spellings that have tripped parsers before (`${...}`, quoted keys, nesting).
const DICTIONARY: &[&str] = &[
    "\n[broker]\n",
    "\n[admin]\n",
    "\n[plugins.p]\n",
    "\n[plugins.\"a b\"]\n",
    "\n[[queues]]\n",
    "\n[[exchanges]]\n",
    "\n[[bindings]]\n",
    "\n[[pipelines]]\n",
    "\n[broker.tls]\n",
    "url = ",
    "urls = ",
    "url_file = ",
    "listen = ",
    "token = ",
    "token_file = ",
    "path = ",
    "config = ",
    "name = ",
    "queue = ",
    "plugin = ",
    "prefetch = ",
    "concurrency = ",
    "on_error = ",
    "max_deliveries = ",
    "retry_delay_ms = ",
    "timeout_ms = ",
    "memory_mb = ",
    "allowed_hosts = ",
    "ca_file = ",
    "allowed_exchanges = ",
    "allowed_queues = ",
    "max_priority = ",
    "dead_letter_exchange = ",
    "arguments = ",
    "durable = ",
    "type = ",
    "exchange = ",
    "routing_key = ",
    "cache_dir = ",
    "shutdown_grace_ms = ",
    "\"${WARREN_FUZZ_UNSET}\"",
    "\"${HOME}\"",
    "${",
    "}",
    "\"",
    "'",
    "\"\"\"",
    "=",
    ".",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "\n",
    "0",
    "-1",
    "65536",
    "18446744073709551616",
    "1e400",
    "nan",
    "true",
    "\"reject\"",
    "\"requeue\"",
    "\"amqp://u:pw@127.0.0.1:5672/%2f\"",
    "\"amqps://h\"",
    "\"127.0.0.1:9090\"",
    "\"[::1]:0\"",
    "\"*.example.com:443\"",
    "\"x-queue-type\"",
    "\"quorum\"",
    "\u{0}",
    "\u{1b}[31m",
    "\u{feff}",
    "é",
];

#[test]
fn config_files() {
    // Relative paths in the seeds resolve against the corpus folder, where every seed is a
    // file: `path = "minimal.toml"` names a plugin file that exists.
    let path = corpus_dir("config").join("warren.toml");
    let seeds = corpus("config");
    let texts = seeds
        .iter()
        .map(|(name, bytes)| (name.clone(), String::from_utf8_lossy(bytes).into_owned()))
        .collect();
    let bytes = seeds.into_iter().map(|(_, bytes)| bytes).collect();
    let inputs =
        mutated(bytes, DICTIONARY).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    fuzz("config", texts, inputs, |text| {
        parsed_or_refused(&text, &path)
    });
}

/// `text` is a valid config, or its error starts with the file and then either quotes the
/// line (a TOML error: syntax, an unknown key, a wrong type) or lists problems, one a line,
/// each starting with the key it is about (`pipelines[0].prefetch: ...`).
fn parsed_or_refused(text: &str, path: &Path) -> TestCaseResult {
    let Err(error) = Config::parse(text, path) else {
        return Ok(());
    };
    let error = format!("{error:#}");
    let file = path.display().to_string();
    let rest = error.strip_prefix(&file);
    prop_assert!(
        rest.is_some(),
        "the error does not start with the file: {error}"
    );
    let rest = rest.unwrap_or_default();
    if let Some(problems) = rest.strip_prefix(":\n") {
        for problem in problems.lines() {
            let key = problem.trim_start().split(": ").next().unwrap_or_default();
            prop_assert!(
                is_key(key),
                "a problem that names no key: {problem:?} in {error}"
            );
        }
    } else {
        prop_assert!(
            rest.contains("line "),
            "a TOML error without its line: {error}"
        );
    }
    Ok(())
}

/// A dotted key path as the validation writes it: `broker.url`, `pipelines[2].queue`,
/// `plugins.NAME.path` (a plugin's name is whatever the table's key says).
fn is_key(key: &str) -> bool {
    const TOP: &[&str] = &[
        "broker",
        "admin",
        "plugins",
        "queues",
        "exchanges",
        "bindings",
        "pipelines",
        "cache_dir",
        "shutdown_grace_ms",
        "telemetry",
    ];
    let top = key.split(['.', '[']).next().unwrap_or_default();
    TOP.contains(&top) && !key.contains('\n')
}
