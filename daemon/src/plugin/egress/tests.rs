//! Unit tests of the egress policy: host patterns, refused blocks, connection targets.

use super::*;

fn policy(hosts: &[&str]) -> EgressPolicy {
    let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
    EgressPolicy::new(&hosts, Duration::from_secs(1), 1024).expect("valid")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn empty_list_allows_nothing() {
    let p = policy(&[]);
    assert!(matches!(
        p.check("example.com", 443, 443, &[ip("93.184.216.34")]),
        Err(Denied::NotListed(_))
    ));
}

#[test]
fn host_and_port_must_match() {
    let p = policy(&[
        "api.example.com:443",
        "*.svc.example.org:8443",
        "plain.example.com",
    ]);
    assert!(
        p.check("api.example.com", 443, 443, &[ip("93.184.216.34")])
            .is_ok()
    );
    assert!(
        p.check("API.example.com.", 443, 443, &[ip("93.184.216.34")])
            .is_ok()
    );
    assert!(
        p.check("api.example.com", 80, 80, &[ip("93.184.216.34")])
            .is_err()
    );
    assert!(
        p.check("a.svc.example.org", 8443, 443, &[ip("93.184.216.35")])
            .is_ok()
    );
    assert!(
        p.check("svc.example.org", 8443, 443, &[ip("93.184.216.35")])
            .is_err()
    );
    assert!(
        p.check("evilsvc.example.org", 8443, 443, &[ip("93.184.216.35")])
            .is_err()
    );
    assert!(
        p.check("plain.example.com", 80, 80, &[ip("93.184.216.36")])
            .is_ok()
    );
    assert!(
        p.check("plain.example.com", 8080, 80, &[ip("93.184.216.36")])
            .is_err()
    );
}

/// One row per special-purpose block: an address inside it (and its edges where useful),
/// with the block named in the refusal, or `None` for an address that is public.
const CLASSIFIED: &[(&str, Option<&str>)] = &[
    // IPv4 special-purpose registry, blocks not globally reachable.
    ("0.0.0.0", Some("this network")),
    ("0.255.255.255", Some("this network")),
    ("1.0.0.0", None),
    ("9.255.255.255", None),
    ("10.0.0.0", Some("private-use 10.")),
    ("10.255.255.255", Some("private-use 10.")),
    ("11.0.0.0", None),
    ("100.63.255.255", None),
    ("100.64.0.0", Some("CGNAT")),
    ("100.127.255.255", Some("CGNAT")),
    ("100.128.0.0", None),
    ("127.0.0.1", Some("loopback")),
    ("127.255.255.255", Some("loopback")),
    ("169.254.169.254", Some("link-local")),
    ("169.253.255.255", None),
    ("169.255.0.0", None),
    ("172.15.255.255", None),
    ("172.16.0.0", Some("private-use 172.")),
    ("172.31.255.255", Some("private-use 172.")),
    ("172.32.0.0", None),
    ("191.255.255.255", None),
    ("192.0.0.0", Some("IETF protocol assignments")),
    ("192.0.0.8", Some("IETF protocol assignments")),
    ("192.0.0.9", Some("IETF protocol assignments")),
    ("192.0.0.10", Some("IETF protocol assignments")),
    ("192.0.0.170", Some("IETF protocol assignments")),
    ("192.0.0.255", Some("IETF protocol assignments")),
    ("192.0.1.0", None),
    ("192.0.2.1", Some("TEST-NET-1")),
    ("192.0.3.0", None),
    ("192.31.196.1", None),  // AS112-v4: globally reachable
    ("192.52.193.1", None),  // AMT: globally reachable
    ("192.175.48.1", None),  // AS112 direct delegation: globally reachable
    ("192.88.98.255", None), // below the deprecated 6to4 relay block
    ("192.88.99.1", Some("6to4 relay")),
    ("192.88.100.0", None),
    ("192.168.1.1", Some("private-use 192.168")),
    ("198.17.255.255", None),
    ("198.18.0.0", Some("benchmarking")),
    ("198.19.255.255", Some("benchmarking")),
    ("198.20.0.0", None),
    ("198.51.100.7", Some("TEST-NET-2")),
    ("203.0.113.7", Some("TEST-NET-3")),
    ("223.255.255.255", None),
    ("224.0.0.1", Some("multicast")),
    ("239.255.255.255", Some("multicast")),
    ("240.0.0.0", Some("reserved 240")),
    ("255.255.255.254", Some("reserved 240")),
    ("255.255.255.255", Some("limited broadcast")),
    ("93.184.216.34", None),
    // IPv6 special-purpose registry.
    ("::", Some("unspecified")),
    ("::1", Some("loopback ::1")),
    ("::ffff:169.254.169.254", Some("link-local 169.254")),
    ("::ffff:198.18.0.1", Some("benchmarking")),
    ("::ffff:93.184.216.34", None),
    ("::ffff:0:5db8:d822", Some("IPv4-translated")),
    ("::ffff:0:a9fe:a9fe", Some("IPv4-translated")),
    ("64:ff9b::5db8:d822", None),
    ("64:ff9b::a9fe:a9fe", Some("link-local 169.254")),
    ("64:ff9b::6440:1", Some("CGNAT")),
    ("64:ff9b::c612:1", Some("benchmarking")),
    ("64:ff9b:1::5db8:d822", Some("local-use NAT64")),
    (
        "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
        Some("local-use NAT64"),
    ),
    ("100::1", Some("discard-only")),
    ("100::ffff:ffff:ffff:ffff", Some("discard-only")),
    ("100:0:0:1::1", Some("dummy prefix")),
    ("2001::1", Some("Teredo")),
    ("2001:0:4136:e378::1", Some("Teredo")),
    ("2001:1::1", None), // PCP anycast
    ("2001:1::2", None), // TURN anycast
    ("2001:1::3", None), // DNS-SD SRP anycast
    ("2001:1::4", Some("IETF protocol assignments 2001::/23")),
    ("2001:2::1", Some("benchmarking 2001:2::/48")),
    ("2001:3::1", None),     // AMT
    ("2001:4:112::1", None), // AS112-v6
    ("2001:4:113::1", Some("IETF protocol assignments 2001::/23")),
    ("2001:10::1", Some("ORCHID")),
    ("2001:1f:ffff::1", Some("ORCHID")),
    ("2001:20::1", None),      // ORCHIDv2
    ("2001:2f:ffff::1", None), // ORCHIDv2
    ("2001:30::1", None),      // drone remote ID tags
    ("2001:3f:ffff::1", None), // drone remote ID tags
    ("2001:40::1", Some("IETF protocol assignments 2001::/23")),
    (
        "2001:1ff:ffff::1",
        Some("IETF protocol assignments 2001::/23"),
    ),
    ("2001:200::1", None), // past 2001::/23
    ("2001:db8::1", Some("documentation 2001:db8")),
    ("2001:db9::1", None),
    ("2002:5db8:d822::1", None),
    ("2002:a9fe:a9fe::1", Some("link-local 169.254")),
    ("2002:a00:1::1", Some("private-use 10.")),
    ("2002:6440:1::1", Some("CGNAT")),
    ("2620:4f:8000::1", None), // AS112 direct delegation
    ("3fff::1", Some("documentation 3fff")),
    ("3fff:fff:ffff::1", Some("documentation 3fff")),
    ("3fff:1000::1", None),
    ("5f00::1", Some("SRv6")),
    ("fc00::1", Some("unique local")),
    ("fdff:ffff::1", Some("unique local")),
    ("fe80::1", Some("link-local fe80")),
    ("febf:ffff::1", Some("link-local fe80")),
    ("fec0::1", Some("site-local")),
    ("ff02::1", Some("multicast ff00")),
    // Outside every block: global unicast (2000::/3) or not.
    ("2606:4700::1111", None),
    ("1fff:ffff::1", Some("not global unicast")),
    ("4000::1", Some("not global unicast")),
    ("::a9fe:a9fe", Some("not global unicast")), // IPv4-compatible, deprecated
    ("::5db8:d822", Some("not global unicast")),
];

#[test]
fn special_purpose_blocks_are_refused_by_name() {
    for &(address, expected) in CLASSIFIED {
        let got = refused_block(ip(address));
        match expected {
            None => assert_eq!(got, None, "{address} is public"),
            Some(part) => assert!(
                got.is_some_and(|block| block.contains(part)),
                "{address}: expected a block containing {part:?}, got {got:?}"
            ),
        }
        assert_eq!(is_public(ip(address)), expected.is_none(), "{address}");
    }
}

#[test]
fn allowed_name_pointing_inside_is_refused() {
    let p = policy(&["api.example.com:443", "*.example.net"]);
    for &(inside, expected) in CLASSIFIED {
        if expected.is_none() {
            continue;
        }
        for host in ["api.example.com", "svc.example.net"] {
            assert!(
                matches!(
                    p.check(host, 443, 443, &[ip("93.184.216.34"), ip(inside)]),
                    Err(Denied::Internal { .. })
                ),
                "{host} -> {inside} should be refused"
            );
        }
    }
}

#[test]
fn reserved_addresses_pass_when_listed_as_literals() {
    let p = policy(&[
        "198.18.0.1:8080",
        "100.64.0.7",
        "[64:ff9b:1::a00:1]:80",
        "[2001:2::1]:*",
    ]);
    for (host, port, resolved) in [
        ("198.18.0.1", 8080, "198.18.0.1"),
        ("100.64.0.7", 80, "100.64.0.7"),
        ("[64:ff9b:1::a00:1]", 80, "64:ff9b:1::a00:1"),
        ("[2001:2::1]", 9000, "2001:2::1"),
    ] {
        assert_eq!(
            p.check(host, port, 80, &[ip(resolved)]),
            Ok(vec![SocketAddr::new(ip(resolved), port)]),
            "{host}"
        );
    }
    // The literal must be the address itself, not another spelling of what it carries.
    assert!(
        p.check("[64:ff9b::c612:1]", 8080, 80, &[ip("64:ff9b::c612:1")])
            .is_err()
    );
}

/// NAT64 and 6to4 addresses are judged by the IPv4 address they carry, but the connection
/// goes to the address that was resolved; an IPv4-mapped one is its IPv4 address.
#[test]
fn targets_are_the_resolved_addresses() {
    let p = policy(&["api.example.com"]);
    let resolved = [
        ip("64:ff9b::5db8:d822"),
        ip("2002:5db8:d822::1"),
        ip("::ffff:93.184.216.34"),
        ip("2606:4700::1111"),
        ip("64:ff9b::5db8:d822"),
    ];
    let targets = p
        .check("api.example.com", 443, 443, &resolved)
        .expect("allowed");
    let expected: Vec<SocketAddr> = [
        "[64:ff9b::5db8:d822]:443",
        "[2002:5db8:d822::1]:443",
        "93.184.216.34:443",
        "[2606:4700::1111]:443",
    ]
    .iter()
    .map(|s| s.parse().expect("addr"))
    .collect();
    assert_eq!(targets, expected, "in order, once each");
}

#[test]
fn public_addresses_pass_in_any_spelling() {
    for public in [
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ] {
        assert!(is_public(ip(public)), "{public} is public");
    }
}

#[test]
fn internal_addresses_need_an_ip_literal() {
    let p = policy(&["127.0.0.1:8080", "[::1]:9000", "localhost:7000"]);
    assert_eq!(
        p.check("127.0.0.1", 8080, 80, &[ip("127.0.0.1")]),
        Ok(vec!["127.0.0.1:8080".parse().expect("addr")])
    );
    assert!(p.check("127.0.0.1", 8081, 80, &[ip("127.0.0.1")]).is_err());
    assert!(p.check("[::1]", 9000, 80, &[ip("::1")]).is_ok());
    assert_eq!(
        p.check("localhost", 7000, 80, &[ip("::1"), ip("127.0.0.1")]),
        Ok(vec![
            "[::1]:7000".parse().expect("addr"),
            "127.0.0.1:7000".parse().expect("addr")
        ])
    );
    assert!(p.check("localhost", 7000, 80, &[ip("10.0.0.1")]).is_err());
    assert!(
        p.check("169.254.169.254", 80, 80, &[ip("169.254.169.254")])
            .is_err()
    );
}

#[test]
fn bad_entries_are_refused() {
    // Stray brackets, and text after `]` that is not a port: typos the fuzz target found
    // accepted (`localhost]:9000` allowed localhost).
    let brackets = [
        "localhost]:9000",
        "[localhost]:80",
        "[::1]x",
        "[::1]]:80",
        "a[b:80",
    ];
    for bad in ["", "a:b", "*", "*.", "a.*.com:80", "[::1"]
        .into_iter()
        .chain(brackets)
    {
        assert!(
            EgressPolicy::new(&[bad.to_string()], Duration::from_secs(1), 1).is_err(),
            "{bad:?}"
        );
    }
}
