//! The daemon under test: in this process (`Running`), or `warren run` as a child process
//! (`KillOnDrop`; `LoggingDaemon` reads its log as it comes).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use warren::app::Daemon;
use warren::config::Config;

use super::config::write_config;

/// How long a `warren run` may take to log a line the test waits for (`warren ready`).
pub const LOG_PATIENCE: Duration = Duration::from_secs(30);

/// A daemon running in this process, started from a config file.
pub struct Running {
    /// The daemon's metrics.
    pub metrics: warren::metrics::SharedMetrics,
    /// Asks for a config reload, as SIGHUP does.
    pub reload: warren::app::ReloadHandle,
    /// When it was ready: every plugin compiled, every pipeline consuming.
    pub ready_at: Instant,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Starts a daemon on `config` and returns once every pipeline consumes.
pub async fn start(config: &str) -> Running {
    let (dir, path) = write_config(config);
    start_at(dir, &path).await
}

/// Starts a daemon on the config file at `path` (kept alive with `dir`).
pub async fn start_at(dir: tempfile::TempDir, path: &Path) -> Running {
    // Daemon logs, shown for failed tests; `RUST_LOG=info` to see them.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let config = Config::load(path).unwrap_or_else(|e| panic!("config refused: {e:#}"));
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("daemon did not start: {e:#}"));
    Running {
        metrics: daemon.metrics().clone(),
        reload: daemon.reload_handle(),
        ready_at: Instant::now(),
        shutdown,
        task: tokio::spawn(daemon.wait()),
        _dir: dir,
    }
}

impl Running {
    /// Whether the daemon has stopped by itself.
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the daemon gracefully and returns its result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("daemon task")
    }
}

/// `warren run --config CONFIG`, for the caller to add to and start with [`KillOnDrop::spawn`].
pub fn warren_run(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command.args(["run", "--config", config.to_str().expect("a UTF-8 path")]);
    command
}

/// A child process (a `warren run`) killed when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Starts `command`.
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().expect("start warren"))
    }

    /// Sends the process `signal` (`TERM`, `HUP`, `9`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, as systemd stops it, and its exit status once it has exited.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.0.wait().expect("wait for warren to exit")
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `warren run` as a process, its stderr (the log) read line by line as it comes.
pub struct LoggingDaemon {
    process: KillOnDrop,
    lines: mpsc::Receiver<String>,
    /// The lines `wait_for` has read so far.
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl LoggingDaemon {
    /// Starts `warren run` on `config` with `args` after it, `RUST_LOG` unset (the default
    /// filter).
    pub fn start(config: &str, args: &[&str]) -> Self {
        let (dir, path) = write_config(config);
        let mut process = KillOnDrop::spawn(
            warren_run(&path)
                .args(args)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let lines = stderr_lines(process.stderr.take().expect("stderr"));
        Self {
            process,
            lines,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// Waits (up to [`LOG_PATIENCE`]) for a log line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let (line, before) = until(&self.lines, needle);
        self.seen.extend(before);
        self.seen.push(line.clone());
        line
    }

    /// SIGTERM; asserts exit 0 and returns the whole log.
    pub fn stop(mut self) -> String {
        assert!(self.process.terminate().success(), "exit 0");
        self.seen.extend(self.lines.iter());
        self.seen.iter().map(|line| format!("{line}\n")).collect()
    }
}

/// Every line `warren run` writes to stderr, sent on as it comes, read to the end on a thread
/// of its own (so that warren never writes to a closed pipe).
pub fn stderr_lines(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Lines as bytes: a raw escape or carriage return must be seen, not decoded away.
        for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Waits (up to [`LOG_PATIENCE`]) for a line holding `needle`; returns it and every line
/// before it.
pub fn until(lines: &mpsc::Receiver<String>, needle: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + LOG_PATIENCE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "warren did not log {needle:?} within {LOG_PATIENCE:?}; it logged:\n{}",
                before.join("\n")
            )
        });
        if line.contains(needle) {
            return (line, before);
        }
        before.push(line);
    }
}
