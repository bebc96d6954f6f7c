//! The exit codes of `warren`, as systemd and scripts see them (the sysexits.h values where
//! one fits).

/// Success.
pub const SUCCESS: u8 = 0;
/// Any failure not listed below (a lost broker that an error retrying cannot fix, a plugin
/// run that trapped, ...).
pub const FAILURE: u8 = 1;
/// The command line is wrong (clap's own code).
pub const USAGE: u8 = 2;
/// `EX_UNAVAILABLE`: the broker stayed unreachable past `[broker] startup_timeout_ms` at
/// start-up. systemd restarts warren after `RestartSec`.
pub const UNAVAILABLE: u8 = 69;
/// `EX_CONFIG`: a bad config or plugin file, or a configuration the broker refuses
/// (credentials, vhost, a queue declared with other arguments). The unit file does not
/// restart on it (`RestartPreventExitStatus=78`): fix the config, then start warren.
pub const CONFIG: u8 = 78;
