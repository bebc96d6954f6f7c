//! The `sleeper` plugin: the work-queue worker of the `pika` tutorials. Each
//! `.` in the body stands for some work: it prints ` [x] Received <body>`,
//! sleeps `seconds_per_dot` per dot (at most `max_seconds`), prints
//! ` [x] Done`, then acks.
//!
//! Config (every key optional):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `seconds_per_dot` | `1.0` | seconds slept per `.` in the body (a number ≥ 0) |
//! | `max_seconds` | `60` | the longest sleep for one message (a number ≥ 0) |
//!
//! A value that is not a number ≥ 0, or an unknown key, refuses the config
//! with an error naming the key. The verdict is always `ack`.
//!
//! The sleep is `std::thread::sleep`, which on `wasm32-wasip2` waits on a WASI
//! monotonic-clock pollable: warren runs it asynchronously, so a sleeping
//! plugin holds no thread and burns no CPU.

use std::time::Duration;

use warren_plugin::{Config, Message, Plugin, Verdict};

/// The config keys this plugin knows.
const KEYS: [&str; 2] = ["seconds_per_dot", "max_seconds"];

/// Sleeps a while per dot in each message.
struct Sleeper {
    /// Seconds slept per `.` in the body.
    seconds_per_dot: f64,
    /// The longest sleep for one message, in seconds.
    max_seconds: f64,
}

impl Plugin for Sleeper {
    fn init(config: Config) -> Result<Self, String> {
        if let Some((key, _)) = config.iter().find(|(key, _)| !KEYS.contains(key)) {
            return Err(format!(
                "unknown config key '{key}' (known: {})",
                KEYS.join(", ")
            ));
        }
        Ok(Sleeper {
            seconds_per_dot: seconds(&config, "seconds_per_dot", 1.0)?,
            max_seconds: seconds(&config, "max_seconds", 60.0)?,
        })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        println!(" [x] Received {}", String::from_utf8_lossy(message.body()));
        std::thread::sleep(self.work(message.body()));
        println!(" [x] Done");
        Verdict::Ack
    }
}

impl Sleeper {
    /// How long the work in `body` takes: one step per `.`, capped.
    fn work(&self, body: &[u8]) -> Duration {
        let dots = body.iter().filter(|&&byte| byte == b'.').count();
        // Both factors are finite and ≥ 0, so the product is ≥ 0 (perhaps
        // infinite, which `min` caps); `max_seconds` fits a `Duration`.
        let seconds = (dots as f64 * self.seconds_per_dot).min(self.max_seconds);
        Duration::from_secs_f64(seconds)
    }
}

/// The value of `key` as a number of seconds (`default` if it is not set): a
/// finite number ≥ 0 that fits a [`Duration`].
fn seconds(config: &Config, key: &str, default: f64) -> Result<f64, String> {
    let Some(value) = config.parse::<f64>(key)? else {
        return Ok(default);
    };
    if value >= 0.0 && Duration::try_from_secs_f64(value).is_ok() {
        Ok(value)
    } else {
        Err(format!(
            "config key '{key}': '{value}' is not a number of seconds ≥ 0"
        ))
    }
}

warren_plugin::export!(Sleeper);

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(pairs: &[(&str, &str)]) -> Result<Sleeper, String> {
        Sleeper::init(pairs.iter().copied().collect())
    }

    #[test]
    fn defaults_are_one_second_per_dot_up_to_a_minute() -> Result<(), String> {
        let sleeper = sleeper(&[])?;
        assert_eq!(sleeper.work(b"Hello..."), Duration::from_secs(3));
        assert_eq!(sleeper.work(b"no dots"), Duration::ZERO);
        assert_eq!(sleeper.work(&[b'.'; 100]), Duration::from_secs(60));
        Ok(())
    }

    #[test]
    fn config_scales_and_caps() -> Result<(), String> {
        let sleeper = sleeper(&[("seconds_per_dot", "0.25"), ("max_seconds", "0.5")])?;
        assert_eq!(sleeper.work(b"."), Duration::from_millis(250));
        assert_eq!(sleeper.work(b"....."), Duration::from_millis(500));
        Ok(())
    }

    #[test]
    fn bad_values_name_the_key() {
        for (key, value) in [
            ("seconds_per_dot", "-1"),
            ("seconds_per_dot", "NaN"),
            ("seconds_per_dot", "inf"),
            ("max_seconds", "lots"),
            ("max_seconds", "1e30"),
        ] {
            let Err(error) = sleeper(&[(key, value)]) else {
                panic!("{key} = {value} was accepted");
            };
            assert!(error.contains(key), "{error}");
        }
        let Err(error) = sleeper(&[("seconds", "1")]) else {
            panic!("an unknown key was accepted");
        };
        assert!(error.contains("'seconds'"), "{error}");
    }
}
