//! What a drain costs: its wall time, the CPU time of this process and of the broker, and the
//! memory of this process.

use std::time::Instant;

use anyhow::Context;

/// One drain: its rate and the CPU time it cost per message.
pub struct Sample {
    pub rate: f64,
    /// CPU µs per message of this process (the bare consumer, or the whole in-process daemon).
    pub own_us: f64,
    /// CPU µs per message of the broker's OS process, if its pid is known.
    pub broker_us: Option<f64>,
}

/// Wall and CPU time from a start point.
pub struct Meter {
    at: Instant,
    own: Option<f64>,
    broker_pid: Option<u32>,
    broker: Option<f64>,
}

impl Meter {
    /// Starts measuring this process, and the broker's if its pid is known.
    pub fn start(broker_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            own: cpu_seconds("self"),
            broker_pid,
            broker: broker_pid.and_then(|pid| cpu_seconds(&pid.to_string())),
        }
    }

    /// The sample for `n` messages handled since the start.
    pub fn stop(&self, n: u64) -> Sample {
        let elapsed = self.at.elapsed().as_secs_f64();
        let per_message =
            |before: Option<f64>, now: Option<f64>| Some((now? - before?) * 1e6 / n.max(1) as f64);
        Sample {
            rate: n as f64 / elapsed,
            own_us: per_message(self.own, cpu_seconds("self")).unwrap_or(f64::NAN),
            broker_us: per_message(
                self.broker,
                self.broker_pid
                    .and_then(|pid| cpu_seconds(&pid.to_string())),
            ),
        }
    }
}

/// User + system CPU seconds of a process (all its threads), from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    /// `USER_HZ`: 100 on every Linux this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// The broker's OS pid from `rabbitmqctl status`, if that works here.
pub async fn broker_pid() -> Option<u32> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .arg("status")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("OS PID:")?.trim().parse().ok())
}

/// A line of `/proc/self/status`, in KiB.
pub fn proc_status_kib(key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/self/status"))
}
