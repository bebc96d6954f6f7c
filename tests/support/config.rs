//! `TestConfig`: a `warren.toml` built up in place of a hand-written template, and the files
//! a test writes for the daemon.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::broker::broker_url;
use super::plugins::test_plugin;

/// Queues the tests declare expire this long after their last use, so a panicking test
/// leaves nothing behind for long.
pub const QUEUE_EXPIRES_MS: i64 = 120_000;

/// The grace period of a test's daemon unless it says otherwise: long enough for any message
/// a test has in flight, short enough that a stop never holds a test up for long.
pub const TEST_GRACE_MS: u64 = 5_000;

/// A `warren.toml` for a test: the test broker, a grace period of [`TEST_GRACE_MS`], and the
/// plugins, queues (expiring when unused) and pipelines added. Each `extra` argument holds
/// whole TOML lines added to that table (`"prefetch = 5\nconcurrency = 10"`).
#[derive(Debug, Clone)]
pub struct TestConfig {
    grace_ms: Option<u64>,
    top: String,
    broker: String,
    broker_tls: String,
    admin: String,
    telemetry: String,
    plugins: String,
    queues: String,
    pipelines: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// The test broker ([`broker_url`]), `shutdown_grace_ms` [`TEST_GRACE_MS`], nothing else.
    pub fn new() -> Self {
        Self::with_url(&broker_url())
    }

    /// Like [`TestConfig::new`], with the broker at `url`.
    pub fn with_url(url: &str) -> Self {
        Self::with_broker(format!("url = \"{url}\"\n"))
    }

    /// Like [`TestConfig::new`], with `[broker] urls`: the nodes tried in turn.
    pub fn with_urls(urls: &[&str]) -> Self {
        let urls: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
        Self::with_broker(format!("urls = [{}]\n", urls.join(", ")))
    }

    fn with_broker(broker: String) -> Self {
        Self {
            grace_ms: Some(TEST_GRACE_MS),
            top: String::new(),
            broker,
            broker_tls: String::new(),
            admin: String::new(),
            telemetry: String::new(),
            plugins: String::new(),
            queues: String::new(),
            pipelines: String::new(),
        }
    }

    /// `shutdown_grace_ms = MS`.
    pub fn grace_ms(mut self, ms: u64) -> Self {
        self.grace_ms = Some(ms);
        self
    }

    /// No `shutdown_grace_ms`: the daemon's default.
    pub fn default_grace(mut self) -> Self {
        self.grace_ms = None;
        self
    }

    /// `lines` at the top of the file, before any table (`bogus_key = 1`).
    pub fn top_level(mut self, lines: &str) -> Self {
        self.top.push_str(lines);
        self.top.push('\n');
        self
    }

    /// `[broker] connection_name`, as the broker lists the daemon's connections.
    pub fn connection_name(mut self, name: &str) -> Self {
        let _ = writeln!(self.broker, "connection_name = \"{name}\"");
        self
    }

    /// `lines` in `[broker]` (`startup_timeout_ms = 2000`).
    pub fn broker_lines(mut self, lines: &str) -> Self {
        let _ = writeln!(self.broker, "{lines}");
        self
    }

    /// `lines` in `[broker.tls]` (`ca_file = "ca.pem"`).
    pub fn broker_tls(mut self, lines: &str) -> Self {
        let _ = writeln!(self.broker_tls, "{lines}");
        self
    }

    /// `[admin]` listening on `127.0.0.1:PORT`.
    pub fn admin(mut self, port: u16) -> Self {
        self.admin = format!("\n[admin]\nlisten = \"127.0.0.1:{port}\"\n");
        self
    }

    /// `[telemetry]`: message traces exported to the OTLP/HTTP receiver at `endpoint`, with
    /// `service_name`.
    pub fn otlp(mut self, endpoint: &str, service_name: &str) -> Self {
        self.telemetry = format!(
            "\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"{service_name}\"\n"
        );
        self
    }

    /// `[plugins.NAME]` from the `.wasm` at `path` (relative to the config file, or absolute),
    /// its `config` table written as the inside of an inline table (`to = "out"`), and `extra`
    /// lines (`timeout_ms = 100`).
    pub fn plugin(mut self, name: &str, path: &Path, config: &str, extra: &str) -> Self {
        let _ = writeln!(
            self.plugins,
            "\n[plugins.{name}]\npath = \"{}\"\nconfig = {{ {config} }}\n{extra}",
            path.display()
        );
        self
    }

    /// A queue that expires [`QUEUE_EXPIRES_MS`] after its last use, with `extra` lines
    /// (`dead_letter_exchange = "x"`).
    pub fn queue(self, name: &str, extra: &str) -> Self {
        let expires = format!("\"x-expires\" = {QUEUE_EXPIRES_MS}");
        self.queue_exact(name, &expires, extra)
    }

    /// A queue with exactly the `arguments` given as the inside of an inline table
    /// (`"x-queue-type" = "quorum"`; none if empty), and `extra` lines.
    pub fn queue_exact(mut self, name: &str, arguments: &str, extra: &str) -> Self {
        let _ = writeln!(self.queues, "\n[[queues]]\nname = \"{name}\"\n{extra}");
        if !arguments.is_empty() {
            let _ = writeln!(self.queues, "arguments = {{ {arguments} }}");
        }
        self
    }

    /// A pipeline named `name` from `queue` to `plugin`, with `extra` lines (`prefetch = 5`).
    pub fn pipeline(mut self, name: &str, queue: &str, plugin: &str, extra: &str) -> Self {
        let _ = writeln!(
            self.pipelines,
            "\n[[pipelines]]\nname = \"{name}\"\nqueue = \"{queue}\"\nplugin = \"{plugin}\"\n{extra}"
        );
        self
    }

    /// A pipeline `name` from `queue` (expiring) to a plugin of the same name: the `tag_a`
    /// test plugin, which republishes every message to `out` with the header `tag = "a"`;
    /// with `pipeline_extra` lines.
    pub fn tagged(self, name: &str, queue: &str, out: &str, pipeline_extra: &str) -> Self {
        self.plugin(name, &test_plugin("tag_a"), &format!("to = \"{out}\""), "")
            .queue(queue, "")
            .pipeline(name, queue, name, pipeline_extra)
    }

    /// Like [`TestConfig::tagged`], but the plugin is named `tagged` and is the file
    /// `tagged.wasm` beside the config, which the caller writes (and swaps, to reload it).
    pub fn tagged_beside(self, name: &str, queue: &str, out: &str, pipeline_extra: &str) -> Self {
        let to = format!("to = \"{out}\"");
        self.plugin("tagged", Path::new("tagged.wasm"), &to, "")
            .queue(queue, "")
            .pipeline(name, queue, "tagged", pipeline_extra)
    }

    /// The file's text.
    pub fn build(&self) -> String {
        let grace = match self.grace_ms {
            Some(ms) => format!("shutdown_grace_ms = {ms}\n"),
            None => String::new(),
        };
        let tls = if self.broker_tls.is_empty() {
            String::new()
        } else {
            format!("\n[broker.tls]\n{}", self.broker_tls)
        };
        format!(
            "{grace}{}\n[broker]\n{}{tls}{}{}{}{}{}",
            self.top,
            self.broker,
            self.admin,
            self.telemetry,
            self.plugins,
            self.queues,
            self.pipelines
        )
    }
}

/// `dead_letter_exchange = "DLX"`: a queue's line, for [`TestConfig::queue`].
pub fn dead_letters_to(dlx: &str) -> String {
    format!("dead_letter_exchange = \"{dlx}\"")
}

/// The one-pipeline config most tests use: `queue` (expiring, with `queue_extra` lines),
/// consumed by a pipeline of the same name with `pipeline_extra` lines, running the `scripted`
/// test plugin with `plugin_config`.
pub fn scripted(
    queue: &str,
    plugin_config: &str,
    queue_extra: &str,
    pipeline_extra: &str,
) -> TestConfig {
    TestConfig::new()
        .plugin("scripted", &test_plugin("scripted"), plugin_config, "")
        .queue(queue, queue_extra)
        .pipeline(queue, queue, "scripted", pipeline_extra)
}

/// [`scripted`] with nothing more on the queue, as text.
pub fn scripted_config(queue: &str, plugin_config: &str, pipeline_extra: &str) -> String {
    scripted(queue, plugin_config, "", pipeline_extra).build()
}

/// Writes `config` to a temporary `warren.toml` and returns its path (kept while the dir lives).
pub fn write_config(config: &str) -> (tempfile::TempDir, PathBuf) {
    write_config_with(config, &[])
}

/// Like [`write_config`], with `files` beside it: each a path relative to the config's folder
/// (its folders made) and its contents.
pub fn write_config_with(config: &str, files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (file, contents) in files {
        let file = dir.path().join(file);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("make the file's folder");
        }
        std::fs::write(&file, contents).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
    let path = dir.path().join("warren.toml");
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

/// Replaces `path` atomically with `content` (write a temporary file, then rename).
pub fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}
