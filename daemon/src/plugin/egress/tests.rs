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

/// Log lines show where a request went, never the path, query or user info it carried.
#[test]
fn logged_urls_show_scheme_host_and_port_only() {
    for (url, logged) in [
        (
            "https://user:pw@api.example.com/v1/items?token=s3cret#frag",
            "https://api.example.com:443",
        ),
        (
            "http://169.254.169.254/latest/meta-data/iam?x=1",
            "http://169.254.169.254:80",
        ),
        ("http://[::1]:8080/a/b?key=k", "http://[::1]:8080"),
        ("HTTP://Example.COM:81", "http://example.com:81"),
    ] {
        let uri: http::Uri = url.parse().expect("uri");
        assert_eq!(shown(&uri), logged, "{url}");
    }
}

#[test]
fn bad_entries_are_refused() {
    for bad in ["", "a:b", "*", "*.", "a.*.com:80", "[::1"] {
        assert!(
            EgressPolicy::new(&[bad.to_string()], Duration::from_secs(1), 1).is_err(),
            "{bad:?}"
        );
    }
}

/// A scripted network: names resolve to the listed addresses (or the lookup hangs), every
/// connect is recorded, and goes to `redirect` when set, else to the address itself;
/// connects to addresses in `hang` never complete.
#[derive(Default)]
struct Scripted {
    answers: Vec<(&'static str, Vec<IpAddr>)>,
    hang_lookup: bool,
    hang: Vec<SocketAddr>,
    redirect: Option<SocketAddr>,
    attempts: std::sync::Mutex<Vec<SocketAddr>>,
}

impl Scripted {
    fn attempts(&self) -> Vec<SocketAddr> {
        self.attempts.lock().expect("lock").clone()
    }
}

impl Network for Scripted {
    async fn lookup(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        if self.hang_lookup {
            std::future::pending::<()>().await;
        }
        Ok(self
            .answers
            .iter()
            .find(|(name, _)| *name == host)
            .map(|(_, ips)| ips.clone())
            .unwrap_or_default())
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        self.attempts.lock().expect("lock").push(addr);
        if self.hang.contains(&addr) {
            std::future::pending::<()>().await;
        }
        tokio::net::TcpStream::connect(self.redirect.unwrap_or(addr)).await
    }
}

/// An HTTP server on 127.0.0.1 that answers every request `200 ok`.
async fn serve_ok() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

fn get(url: &str) -> http::Request<WasiBody> {
    let body = http_body_util::Empty::<bytes::Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Request::get(url).body(body).expect("request")
}

/// Sends `url` through the hooks of a plugin allowed `hosts`, on `net`.
async fn fetch(
    hosts: &[&str],
    timeout: Duration,
    net: &Arc<Scripted>,
    url: &str,
) -> Result<String, HttpError> {
    let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
    let policy = EgressPolicy::new(&hosts, timeout, 1024).expect("valid");
    let mut hooks = EgressHooks::with_network(Arc::new(policy), "test".into(), net.clone());
    let sent = hooks.send_request(get(url), None, Box::new(async { Ok(()) }));
    let (response, _io) = Box::into_pin(sent).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A name resolving to a dead address first and a live one second still connects: the
/// addresses are tried in the resolver's order.
#[tokio::test]
async fn every_resolved_address_is_tried_in_order() {
    let live = serve_ok().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let net = Arc::new(Scripted {
        answers: vec![("localhost", vec![ip("::1"), ip("127.0.0.1")])],
        ..Default::default()
    });
    let url = format!("http://localhost:{}/", live.port());
    let host = format!("localhost:{}", live.port());
    let body = fetch(&[&host], Duration::from_secs(2), &net, &url).await;
    assert_eq!(body.expect("second address answers"), "ok");
    assert_eq!(
        net.attempts(),
        [SocketAddr::new(ip("::1"), live.port()), live],
        "::1 first (nothing listens there), then 127.0.0.1"
    );

    // Nothing listening anywhere: the last address's error.
    let net = Arc::new(Scripted {
        answers: vec![("localhost", vec![ip("::1"), ip("127.0.0.1")])],
        ..Default::default()
    });
    let url = format!("http://localhost:{}/", dead.port());
    let host = format!("localhost:{}", dead.port());
    let failed = fetch(&[&host], Duration::from_secs(2), &net, &url).await;
    assert!(
        matches!(failed, Err(HttpError::ConnectionRefused)),
        "{failed:?}"
    );
    assert_eq!(net.attempts().len(), 2);
}

/// Each address gets its own connect timeout: one that never answers costs that timeout,
/// then the next is tried.
#[tokio::test]
async fn a_silent_address_times_out_and_the_next_is_tried() {
    let live = serve_ok().await;
    let net = Arc::new(Scripted {
        answers: vec![(
            "api.example.com",
            vec![ip("93.184.216.34"), ip("93.184.216.35")],
        )],
        hang: vec![SocketAddr::new(ip("93.184.216.34"), 80)],
        redirect: Some(live),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let body = fetch(
        &["api.example.com"],
        Duration::from_millis(300),
        &net,
        "http://api.example.com/",
    )
    .await;
    assert_eq!(body.expect("second address answers"), "ok");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        net.attempts(),
        [
            SocketAddr::new(ip("93.184.216.34"), 80),
            SocketAddr::new(ip("93.184.216.35"), 80)
        ]
    );
}

/// A lookup that never answers fails with `DNS-timeout` after the DNS timeout, and nothing
/// is connected to.
#[tokio::test]
async fn a_hanging_dns_lookup_times_out() {
    let net = Arc::new(Scripted {
        hang_lookup: true,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let failed = fetch(
        &["api.example.com"],
        Duration::from_millis(200),
        &net,
        "http://api.example.com/",
    )
    .await;
    assert!(matches!(failed, Err(HttpError::DnsTimeout)), "{failed:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(net.attempts().is_empty());
    assert_eq!(
        EgressPolicy::new(&[], Duration::from_secs(60), 1)
            .expect("valid")
            .dns_timeout,
        DNS_TIMEOUT,
        "the DNS timeout is its own, not http_timeout_ms"
    );
}

/// A name resolving to NAT64 and 6to4 addresses of a public IPv4 address: the connection
/// goes to the IPv6 addresses that were resolved, never to the IPv4 address they carry.
#[tokio::test]
async fn connections_go_to_the_resolved_address_not_the_embedded_one() {
    let live = serve_ok().await;
    for resolved in ["64:ff9b::5db8:d822", "2002:5db8:d822::1"] {
        let net = Arc::new(Scripted {
            answers: vec![("api.example.com", vec![ip(resolved)])],
            redirect: Some(live),
            ..Default::default()
        });
        let body = fetch(
            &["api.example.com"],
            Duration::from_secs(2),
            &net,
            "http://api.example.com/",
        )
        .await;
        assert_eq!(body.expect("answered"), "ok");
        assert_eq!(net.attempts(), [SocketAddr::new(ip(resolved), 80)]);
    }
}

/// A refused address (a name pointing into a reserved block) makes no connection at all;
/// a name not listed is not even looked up.
#[tokio::test]
async fn refused_requests_never_connect() {
    let net = Arc::new(Scripted {
        answers: vec![
            (
                "api.example.com",
                vec![ip("93.184.216.34"), ip("198.18.0.1")],
            ),
            ("other.example.com", vec![ip("93.184.216.34")]),
        ],
        ..Default::default()
    });
    for url in [
        "http://api.example.com/",
        "http://other.example.com/",
        "http://198.18.0.1/",
    ] {
        let failed = fetch(&["api.example.com"], Duration::from_secs(1), &net, url).await;
        assert!(
            matches!(failed, Err(HttpError::HttpRequestDenied)),
            "{url}: {failed:?}"
        );
    }
    assert!(net.attempts().is_empty());
}
