//! Fuzz target `egress`: any `allowed_hosts` list, any authority a plugin puts in a request and
//! any addresses its name resolves to. The policy never panics, and what it lets through is only
//! ever an address that was resolved, on the port asked for, that is public or was listed as
//! that IP literal (or `localhost`, for loopback).
//!
//! A seed is lines: `allow ENTRY`, `request AUTHORITY` (the first one counts), `resolved IP`.

use std::net::IpAddr;

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::{corpus, fuzz, mutated};
use crate::plugin::egress::{EgressPolicy, refused_block};

/// Spellings of hosts, ports and addresses that parsers have disagreed on.
const DICTIONARY: &[&str] = &[
    "allow ",
    "request ",
    "resolved ",
    "\n",
    ":",
    "::",
    "[",
    "]",
    "*",
    "*.",
    ".",
    "@",
    "%25",
    "%",
    "localhost",
    "LOCALHOST.",
    "127.0.0.1",
    "0177.0.0.1",
    "0x7f.1",
    "2130706433",
    "::1",
    "::ffff:",
    "::ffff:0:",
    "64:ff9b::",
    "64:ff9b:1::",
    "2002:",
    "fe80::",
    "fc00::",
    "ff02::1",
    "169.254.169.254",
    "100.64.0.1",
    "198.18.0.1",
    "192.0.0.8",
    "240.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "10.0.0.1",
    "8.8.8.8",
    "2606:4700::1111",
    ":80",
    ":443",
    ":*",
    ":0",
    ":65535",
    ":65536",
    ":-1",
    "example.com",
    "EXAMPLE.com.",
    "user:pw@",
    "\u{0}",
    " ",
    "\t",
];

/// One fuzz input: the policy's entries, the request's authority, the addresses resolved.
#[derive(Debug, Clone, Default)]
struct Input {
    allow: Vec<String>,
    request: String,
    resolved: Vec<IpAddr>,
}

impl Input {
    fn read(bytes: &[u8]) -> Self {
        let mut input = Input::default();
        let mut requested = false;
        for line in String::from_utf8_lossy(bytes).lines() {
            if let Some(entry) = line.strip_prefix("allow ") {
                input.allow.push(entry.to_owned());
            } else if let Some(authority) = line.strip_prefix("request ")
                && !requested
            {
                requested = true;
                input.request = authority.to_owned();
            } else if let Some(ip) = line.strip_prefix("resolved ")
                && let Ok(ip) = ip.trim().parse()
            {
                input.resolved.push(ip);
            }
        }
        input
    }
}

#[test]
fn egress_policy() {
    let seeds = corpus("egress");
    let inputs: Vec<(String, Input)> = seeds
        .iter()
        .map(|(name, bytes)| (name.clone(), Input::read(bytes)))
        .collect();
    let bytes = seeds.into_iter().map(|(_, bytes)| bytes).collect();
    let strategy = mutated(bytes, DICTIONARY).prop_map(|bytes| Input::read(&bytes));
    fuzz("egress", inputs, strategy, |input| {
        only_what_was_allowed(&input)
    });
}

fn only_what_was_allowed(input: &Input) -> TestCaseResult {
    let timeout = std::time::Duration::from_secs(1);
    let Ok(policy) = EgressPolicy::new(&input.allow, timeout, 1) else {
        return Ok(());
    };
    // As wasi:http takes the authority a guest sets (`set-authority` refuses what does not
    // parse), and as the egress hook reads it.
    let Ok(authority) = input.request.parse::<http::uri::Authority>() else {
        return Ok(());
    };
    let port = authority.port_u16().unwrap_or(80);
    let Ok(targets) = policy.check(authority.host(), port, 80, &input.resolved) else {
        return Ok(());
    };
    prop_assert!(!targets.is_empty(), "allowed, with nowhere to connect");
    let resolved: Vec<IpAddr> = input.resolved.iter().map(|ip| canonical(*ip)).collect();
    let listed = listed_ips(&input.allow);
    let localhost = input.allow.iter().any(|e| names_localhost(e));
    for target in &targets {
        let ip = target.ip();
        prop_assert_eq!(target.port(), port);
        prop_assert!(resolved.contains(&ip), "{} was not resolved", ip);
        let explicit = listed.contains(&ip) || (localhost && ip.is_loopback());
        prop_assert!(
            explicit || refused_block(ip).is_none(),
            "{} ({:?}) let through without being listed",
            ip,
            refused_block(ip)
        );
    }
    Ok(())
}

/// An IPv4-mapped IPv6 address as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Every IP literal in the entries, however written (`ip`, `ip:port`, `[ip]:port`), worked
/// out apart from the policy's own parser.
fn listed_ips(entries: &[String]) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        let bare = entry.trim_start_matches('[');
        let candidates = [
            Some(entry),
            bare.split(']').next(),
            entry.rsplit_once(':').map(|(host, _)| host),
        ];
        for candidate in candidates.into_iter().flatten() {
            let candidate = candidate.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = candidate.trim_end_matches('.').parse::<IpAddr>() {
                ips.push(canonical(ip));
            }
        }
    }
    ips
}

/// True if the entry is `localhost`, with a port or not, any case, trailing dots allowed.
fn names_localhost(entry: &str) -> bool {
    let host = entry.trim().split(':').next().unwrap_or_default();
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
}
