//! RabbitMQ nodes a test starts for itself, beside the system broker on 5672: each with its own
//! node name, ports and data directory, stopped and deleted when dropped (even when the test
//! panics). The tests that stop a broker, trip its alarms or need a cluster or a TLS listener
//! use these, so they never disturb the broker other tests share.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::wait::POLL;

/// The prefix of every test node's name: `warren-test-<what>-<pid>-<n>@localhost`.
const NODE_PREFIX: &str = "warren-test-";

/// How long a node may take to boot (measured here: about 8 s alone, longer while other nodes
/// boot on the same two cores).
pub const NODE_BOOT: Duration = Duration::from_secs(120);

/// How long one `rabbitmqctl` command may take before the test fails instead of hanging.
pub const CTL_LIMIT: Duration = Duration::from_secs(120);

/// What a node is started with, beyond its name, ports and directories.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    /// Plugins to enable (`rabbitmq_auth_mechanism_ssl`).
    pub plugins: Vec<String>,
    /// Lines of `rabbitmq.conf` (`consumer_timeout = 2000`). `{dir}` stands for the node's
    /// directory and `{port}` for its AMQP port. Without a `listeners.` line the node listens
    /// for plain AMQP on its port.
    pub conf: String,
    /// Files written into the node's directory before it starts (certificates).
    pub files: Vec<(String, Vec<u8>)>,
    /// Erlang terms of `advanced.config`, for settings `rabbitmq.conf` cannot set
    /// (`{rabbit, [{channel_tick_interval, 500}]}`); empty for none.
    pub advanced: Vec<String>,
}

impl NodeSpec {
    /// A plain node: no plugins, the broker's defaults.
    pub fn plain() -> Self {
        Self::default()
    }

    /// With `lines` added to `rabbitmq.conf`.
    pub fn conf(mut self, lines: &str) -> Self {
        self.conf.push_str(lines);
        self.conf.push('\n');
        self
    }

    /// With `term` (one application's settings) added to `advanced.config`.
    pub fn advanced(mut self, term: &str) -> Self {
        self.advanced.push(term.to_owned());
        self
    }
}

/// A RabbitMQ node of the test's own. Dropping it kills the node and deletes its directory.
pub struct Node {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node for `what` (a word in its name) and waits until it accepts AMQP
    /// connections; the test fails with the end of the node's log if it does not within
    /// [`NODE_BOOT`].
    pub async fn start(what: &str, spec: &NodeSpec) -> Node {
        sweep_orphans();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let short = format!("{NODE_PREFIX}{what}-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{short}."))
            .tempdir()
            .expect("a node's directory");
        let node = Node {
            name: format!("{short}@localhost"),
            port: free_port(),
            dir,
        };
        node.write_files(spec).await;
        succeeds(&mut node.server_command(), "rabbitmq-server -detached").await;
        node.wait_accepting().await;
        node
    }

    async fn write_files(&self, spec: &NodeSpec) {
        let dir = self.dir.path();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("node folders");
        }
        let plugins = spec.plugins.join(",");
        std::fs::write(dir.join("enabled_plugins"), format!("[{plugins}].\n"))
            .expect("enabled_plugins");
        let mut conf = spec
            .conf
            .replace("{dir}", &dir.display().to_string())
            .replace("{port}", &self.port.to_string());
        if !conf.contains("listeners.") {
            conf.push_str(&format!("listeners.tcp.default = {}\n", self.port));
        }
        // The node's own work is what the tests measure; keep its logs small.
        conf.push_str("log.file.level = warning\n");
        std::fs::write(dir.join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        let advanced = format!("[{}].\n", spec.advanced.join(",\n"));
        std::fs::write(dir.join("advanced.config"), advanced).expect("advanced.config");
        for (name, contents) in &spec.files {
            std::fs::write(dir.join(name), contents).expect("a node's file");
        }
        // The Debian rabbitmq-server runs the node as the rabbitmq user (with its Erlang
        // cookie, which rabbitmqctl uses too).
        let mut chown = tokio::process::Command::new("chown");
        chown.args(["-R", "rabbitmq:rabbitmq"]).arg(dir);
        succeeds(&mut chown, "chown -R rabbitmq:rabbitmq").await;
    }

    fn server_command(&self) -> tokio::process::Command {
        let dir = self.dir.path();
        let mut command = tokio::process::Command::new("rabbitmq-server");
        command
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("node.pid")
    }

    /// Waits until the node's AMQP port accepts connections (the listener opens last).
    async fn wait_accepting(&self) {
        let started = Instant::now();
        while started.elapsed() < NODE_BOOT {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(POLL * 4).await;
        }
        panic!(
            "RabbitMQ node {} did not accept connections on port {} within {NODE_BOOT:?}; its log ends:\n{}",
            self.name,
            self.port,
            self.log_tail()
        );
    }

    /// The last lines of the node's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = self
            .dir
            .path()
            .join("log")
            .join(format!("{}.log", self.name));
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| format!("({e})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The node's name (`warren-test-…@localhost`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's AMQP (or AMQPS, for a TLS node) port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's directory (its certificates live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// What `rabbitmqctl -q -n NODE ARGS` prints; the test fails if it fails or takes longer
    /// than [`CTL_LIMIT`].
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut command = tokio::process::Command::new("rabbitmqctl");
        command
            .args(["-q", "-n", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTL_LIMIT, command.output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "rabbitmqctl {args:?} on {} took over {CTL_LIMIT:?}",
                    self.name
                )
            })
            .unwrap_or_else(|e| panic!("rabbitmqctl {args:?}: {e}"));
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the RabbitMQ application (the Erlang node stays up): clients lose their
    /// connections and new ones are refused.
    pub async fn stop_app(&self) {
        self.ctl(&["stop_app"]).await;
    }

    /// Starts the application again and waits until the node accepts connections.
    pub async fn start_app(&self) {
        self.ctl(&["start_app"]).await;
        self.wait_accepting().await;
    }

    /// Ready and unacknowledged messages of `queue`.
    pub async fn queue_counts(&self, queue: &str) -> (usize, usize) {
        let listing = self.ctl(&super::broker::QUEUE_COUNTS).await;
        super::broker::queue_row_counts(&listing, queue)
    }

    /// Kills the node at once (its data is thrown away with it).
    fn kill(&self) {
        let pid = std::fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        match pid {
            Some(pid) => kill_and_wait(pid),
            // Not booted far enough to write its pid: ask it to stop.
            None => {
                let _ = Command::new("timeout")
                    .args(["60", "rabbitmqctl", "-q", "-n", &self.name, "stop"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Its data is the test's alone and deleted next: no need for a graceful stop.
        self.kill();
    }
}

/// Runs `command` (`what`, for messages); the test fails if it fails or takes longer than
/// [`CTL_LIMIT`].
async fn succeeds(command: &mut tokio::process::Command, what: &str) {
    command.kill_on_drop(true);
    let status = tokio::time::timeout(CTL_LIMIT, command.status())
        .await
        .unwrap_or_else(|_| panic!("{what} took over {CTL_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// `kill -9 PID`, then waits (a few seconds at most) until the process is gone.
fn kill_and_wait(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let started = Instant::now();
    while proc.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(POLL);
    }
}

/// A TCP port no one listens on now (the OS picks it; the node binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Kills test nodes left behind by test processes that are gone (a run killed with -9 does
/// not drop its nodes) and deletes their directories, once per test process.
fn sweep_orphans() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let gone = |owner: u32| !Path::new(&format!("/proc/{owner}")).exists();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let environ = String::from_utf8_lossy(&environ);
            let node = environ
                .split('\0')
                .find_map(|v| v.strip_prefix("RABBITMQ_NODENAME="));
            if node.and_then(owner_of).is_some_and(gone) {
                kill_and_wait(pid);
            }
        }
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_of(&name).is_some_and(gone) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// The test process a node's name (`warren-test-<what>-<pid>-<n>@localhost`) or directory
/// (`warren-test-<what>-<pid>-<n>.<random>`) belongs to.
fn owner_of(name: &str) -> Option<u32> {
    let name = name.strip_prefix(NODE_PREFIX)?;
    let name = name.split(['@', '.']).next()?;
    let mut parts = name.rsplit('-');
    parts.next()?; // n
    parts.next()?.parse().ok()
}

/// Three nodes joined into one RabbitMQ cluster (quorum queues replicate across them).
pub struct Cluster {
    /// The nodes; the others joined the first.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `count` nodes (at once) and joins the others to the first.
    pub async fn start(what: &str, count: usize) -> Cluster {
        let spec = NodeSpec::plain();
        let boots = (0..count).map(|i| {
            let (what, spec) = (format!("{what}{}", i + 1), spec.clone());
            async move { Node::start(&what, &spec).await }
        });
        let nodes = futures_util::future::join_all(boots).await;
        let seed = nodes[0].name().to_owned();
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]).await;
            node.ctl(&["join_cluster", &seed]).await;
            node.start_app().await;
        }
        Cluster { nodes }
    }

    /// The AMQP URL of every node, the `i`-th first and then the others in turn (a daemon
    /// given these connects to node `i`).
    pub fn urls_from(&self, i: usize) -> Vec<String> {
        let n = self.nodes.len();
        (0..n).map(|k| self.nodes[(i + k) % n].url()).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_node_and_its_directory_name_their_test_process() {
        assert_eq!(
            super::owner_of("warren-test-c-t-1-4242-3@localhost"),
            Some(4242)
        );
        assert_eq!(super::owner_of("warren-test-alarm-4242-3.x9Yz"), Some(4242));
        assert_eq!(super::owner_of("rabbit@localhost"), None);
        assert_eq!(super::owner_of("warren-test-alarm"), None);
    }
}
