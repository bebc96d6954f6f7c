//! The daemon under test: in this process (`Running`), or `warren run` as a child process
//! (`KillOnDrop`; `LoggingDaemon` reads its log as it comes).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
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
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<String>,
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
        let stderr = BufReader::new(process.stderr.take().expect("stderr"));
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in stderr.lines().map_while(Result::ok) {
                let _ = lines_tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Self {
            process,
            lines,
            reader,
            _dir: dir,
        }
    }

    /// Waits (up to [`LOG_PATIENCE`]) for a log line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LOG_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("warren did not log {needle:?} within {LOG_PATIENCE:?}"),
            }
        }
    }

    /// SIGTERM; asserts exit 0 and returns the whole log.
    pub fn stop(mut self) -> String {
        assert!(self.process.terminate().success(), "exit 0");
        self.reader.join().expect("stderr reader")
    }
}
