//! The daemon under test: in this process (`Running`), or `warren run` as a child process
//! (`KillOnDrop`).

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use warren::app::Daemon;
use warren::config::Config;

use super::config::write_config;

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
