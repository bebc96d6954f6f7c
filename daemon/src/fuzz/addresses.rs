//! Fuzz target `addresses`: the egress address classifier ([`refused_block`]) on addresses
//! near the seeds (a seed's first bits kept, the rest random), checked against what the
//! standard library knows and against the rule that an address carrying an IPv4 address
//! (IPv4-mapped, NAT64, 6to4) is judged as that address.
//!
//! A seed file holds addresses, one a line (`#` starts a comment).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::{corpus, fuzz};
use crate::plugin::egress::refused_block;

#[test]
fn address_classifier() {
    let mut seeds = Vec::new();
    for (file, bytes) in corpus("addresses") {
        for (n, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if !line.is_empty() {
                let ip: IpAddr = line
                    .parse()
                    .unwrap_or_else(|e| panic!("{file}:{}: {line:?}: {e}", n + 1));
                seeds.push((format!("{file}:{}", n + 1), ip));
            }
        }
    }
    let ips: Vec<IpAddr> = seeds.iter().map(|(_, ip)| *ip).collect();
    let near = (0..ips.len(), 0u32..=128, any::<u128>())
        .prop_map(move |(i, keep, noise)| near(ips[i], keep, noise));
    fuzz("addresses", seeds, near, judged_right);
}

/// `ip` with its first `keep` bits kept and the others taken from `noise`.
fn near(ip: IpAddr, keep: u32, noise: u128) -> IpAddr {
    let mix = |bits: u128, width: u32| {
        let keep = keep.min(width);
        let mask = if keep == 0 {
            0
        } else {
            u128::MAX << (width - keep)
        };
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        (bits & mask) | (noise & !mask & all)
    };
    match ip {
        IpAddr::V4(v4) => {
            let bits = mix(u128::from(v4.to_bits()), 32);
            IpAddr::V4(Ipv4Addr::from_bits(u32::try_from(bits).unwrap_or(u32::MAX)))
        }
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(mix(v6.to_bits(), 128))),
    }
}

fn judged_right(ip: IpAddr) -> TestCaseResult {
    let refused = refused_block(ip).is_some();
    match ip {
        IpAddr::V4(v4) => {
            let not_global = v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                || v4.octets()[0] >= 240
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
                || (v4.octets()[0] == 198 && v4.octets()[1] & 0xfe == 18)
                || v4.octets()[..3] == [192, 0, 0];
            if not_global {
                prop_assert!(refused, "{} is not globally reachable, yet allowed", ip);
            }
            // The same address in IPv4-mapped form is the same destination.
            let mapped = refused_block(IpAddr::V6(v4.to_ipv6_mapped())).is_some();
            prop_assert_eq!(mapped, refused, "{} and its IPv4-mapped form differ", ip);
        }
        IpAddr::V6(v6) => {
            // Outside global unicast (2000::/3), only an address carrying an IPv4 one may be
            // reachable, as that address.
            let not_global = v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.segments()[..2] == [0x2001, 0xdb8]
                || (v6.segments()[0] & 0xe000 != 0x2000 && carried_v4(v6).is_none());
            if not_global {
                prop_assert!(refused, "{} is not globally reachable, yet allowed", ip);
            }
            if let Some(carried) = carried_v4(v6) {
                let as_v4 = refused_block(IpAddr::V4(carried)).is_some();
                prop_assert_eq!(
                    refused,
                    as_v4,
                    "{} is not judged as the {} it carries",
                    ip,
                    carried
                );
            }
            // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765) is never for plugins.
            if v6.segments()[..6] == [0, 0, 0, 0, 0xffff, 0] {
                prop_assert!(refused, "IPv4-translated {} allowed", ip);
            }
        }
    }
    Ok(())
}

/// The IPv4 address an IPv6 one carries and is routed as: IPv4-mapped, NAT64 (64:ff9b::/96),
/// 6to4 (2002::/16, bits 16 to 48).
fn carried_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = v6.octets();
    let s = v6.segments();
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}
