//! Which addresses are not for plugins: the IANA special-purpose blocks (IPv4 and IPv6) that
//! are not globally reachable, and how an address that carries another is judged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is: the same
/// destination in another spelling. Other forms that carry an IPv4 address (NAT64, 6to4) stay
/// as they are: the network, not the socket layer, translates them.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What egress makes of a special-purpose block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Not globally reachable: refused unless listed as that IP literal.
    Refused,
    /// A globally reachable assignment inside a refused block.
    Global,
    /// Carries an IPv4 address (these four bytes of it) and reaches what that address
    /// reaches: judged as it.
    Carries([usize; 4]),
}

/// One special-purpose block, named as the IANA registries name it.
struct Block<A> {
    base: A,
    len: u32,
    name: &'static str,
    reach: Reach,
}

const fn v4(base: Ipv4Addr, len: u32, name: &'static str) -> Block<Ipv4Addr> {
    Block {
        base,
        len,
        name,
        reach: Reach::Refused,
    }
}

const fn v6(base: Ipv6Addr, len: u32, name: &'static str, reach: Reach) -> Block<Ipv6Addr> {
    Block {
        base,
        len,
        name,
        reach,
    }
}

const fn a4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

#[allow(clippy::too_many_arguments)]
const fn a6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

/// IPv4 blocks refused unless listed as an IP literal: every block of the IANA IPv4
/// Special-Purpose Address Registry that is not globally reachable, 192.0.0.0/24 as a whole
/// (its PCP and TURN anycast addresses included: no HTTP service lives there), the deprecated
/// 6to4 relay anycast block, and multicast.
const V4_REFUSED: &[Block<Ipv4Addr>] = &[
    v4(a4(0, 0, 0, 0), 8, "\"this network\" 0.0.0.0/8"),
    v4(a4(10, 0, 0, 0), 8, "private-use 10.0.0.0/8"),
    v4(
        a4(100, 64, 0, 0),
        10,
        "shared address space (CGNAT) 100.64.0.0/10",
    ),
    v4(a4(127, 0, 0, 0), 8, "loopback 127.0.0.0/8"),
    v4(a4(169, 254, 0, 0), 16, "link-local 169.254.0.0/16"),
    v4(a4(172, 16, 0, 0), 12, "private-use 172.16.0.0/12"),
    v4(
        a4(192, 0, 0, 0),
        24,
        "IETF protocol assignments 192.0.0.0/24",
    ),
    v4(
        a4(192, 0, 2, 0),
        24,
        "documentation (TEST-NET-1) 192.0.2.0/24",
    ),
    v4(
        a4(192, 88, 99, 0),
        24,
        "deprecated 6to4 relay anycast 192.88.99.0/24",
    ),
    v4(a4(192, 168, 0, 0), 16, "private-use 192.168.0.0/16"),
    v4(a4(198, 18, 0, 0), 15, "benchmarking 198.18.0.0/15"),
    v4(
        a4(198, 51, 100, 0),
        24,
        "documentation (TEST-NET-2) 198.51.100.0/24",
    ),
    v4(
        a4(203, 0, 113, 0),
        24,
        "documentation (TEST-NET-3) 203.0.113.0/24",
    ),
    v4(a4(224, 0, 0, 0), 4, "multicast 224.0.0.0/4"),
    v4(
        a4(255, 255, 255, 255),
        32,
        "limited broadcast 255.255.255.255",
    ),
    v4(a4(240, 0, 0, 0), 4, "reserved 240.0.0.0/4"),
];

/// IPv6 special-purpose blocks: the IANA IPv6 Special-Purpose Address Registry, with the
/// IPv4-translated, site-local and multicast blocks. The longest matching block decides; an
/// address in none is public if it is global unicast (2000::/3), refused otherwise.
const V6_BLOCKS: &[Block<Ipv6Addr>] = &[
    v6(
        a6(0, 0, 0, 0, 0, 0, 0, 0),
        128,
        "unspecified ::",
        Reach::Refused,
    ),
    v6(
        a6(0, 0, 0, 0, 0, 0, 0, 1),
        128,
        "loopback ::1",
        Reach::Refused,
    ),
    v6(
        a6(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        "IPv4-mapped ::ffff:0:0/96",
        Reach::Carries([12, 13, 14, 15]),
    ),
    v6(
        a6(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        "IPv4-translated ::ffff:0:0:0/96",
        Reach::Refused,
    ),
    v6(
        a6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        "NAT64 64:ff9b::/96",
        Reach::Carries([12, 13, 14, 15]),
    ),
    v6(
        a6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64 64:ff9b:1::/48",
        Reach::Refused,
    ),
    v6(
        a6(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only 100::/64",
        Reach::Refused,
    ),
    v6(
        a6(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "dummy prefix 100:0:0:1::/64",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments 2001::/23",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "Teredo 2001::/32",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 1, 0, 0, 0, 0, 0, 1),
        128,
        "PCP anycast 2001:1::1",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 1, 0, 0, 0, 0, 0, 2),
        128,
        "TURN anycast 2001:1::2",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 1, 0, 0, 0, 0, 0, 3),
        128,
        "DNS-SD SRP anycast 2001:1::3",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking 2001:2::/48",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 3, 0, 0, 0, 0, 0, 0),
        32,
        "AMT 2001:3::/32",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 4, 0x112, 0, 0, 0, 0, 0),
        48,
        "AS112-v6 2001:4:112::/48",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 0x10, 0, 0, 0, 0, 0, 0),
        28,
        "deprecated ORCHID 2001:10::/28",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        "ORCHIDv2 2001:20::/28",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 0x30, 0, 0, 0, 0, 0, 0),
        28,
        "drone remote ID tags 2001:30::/28",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation 2001:db8::/32",
        Reach::Refused,
    ),
    v6(
        a6(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        "6to4 2002::/16",
        Reach::Carries([2, 3, 4, 5]),
    ),
    v6(
        a6(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0),
        48,
        "AS112 direct delegation 2620:4f:8000::/48",
        Reach::Global,
    ),
    v6(
        a6(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation 3fff::/20",
        Reach::Refused,
    ),
    v6(
        a6(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "SRv6 SIDs 5f00::/16",
        Reach::Refused,
    ),
    v6(
        a6(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local fc00::/7",
        Reach::Refused,
    ),
    v6(
        a6(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local fe80::/10",
        Reach::Refused,
    ),
    v6(
        a6(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "deprecated site-local fec0::/10",
        Reach::Refused,
    ),
    v6(
        a6(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast ff00::/8",
        Reach::Refused,
    ),
];

/// Why an IPv6 address outside every block and outside 2000::/3 is refused.
const NOT_GLOBAL_UNICAST: &str = "not global unicast (outside 2000::/3)";

/// True if the first `len` bits of `a` and `b` are equal.
fn same_prefix(a: u128, b: u128, len: u32, width: u32) -> bool {
    len == 0 || (a ^ b) >> (width - len) == 0
}

/// The special-purpose block that keeps `ip` from being reached (unless it is listed as an IP
/// literal), or `None` for a public address. An address carrying an IPv4 one (IPv4-mapped,
/// NAT64 `64:ff9b::/96`, 6to4) is judged as that IPv4 address.
pub fn refused_block(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u128::from(ip.to_bits());
    V4_REFUSED
        .iter()
        .find(|b| same_prefix(bits, u128::from(b.base.to_bits()), b.len, 32))
        .map(|b| b.name)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    let block = V6_BLOCKS
        .iter()
        .filter(|b| same_prefix(bits, b.base.to_bits(), b.len, 128))
        .max_by_key(|b| b.len);
    match block.map(|b| (b.name, b.reach)) {
        Some((name, Reach::Refused)) => Some(name),
        Some((_, Reach::Global)) => None,
        Some((_, Reach::Carries(at))) => {
            let o = ip.octets();
            refused_v4(Ipv4Addr::new(o[at[0]], o[at[1]], o[at[2]], o[at[3]]))
        }
        None if bits >> 125 == 0b001 => None,
        None => Some(NOT_GLOBAL_UNICAST),
    }
}

/// True for addresses on the public internet: see [`refused_block`].
pub fn is_public(ip: IpAddr) -> bool {
    refused_block(ip).is_none()
}
