//! Unit tests of the hooks: what is logged, and where connections go (on a scripted network).

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::plugin::egress::DNS_TIMEOUT;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
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

/// Counts what it is told, for the counting test.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<(String, String, EgressResult)>>);

impl EgressCounter for Recorded {
    fn count(&self, plugin: &str, host: &str, result: EgressResult) {
        let seen = (plugin.to_owned(), host.to_owned(), result);
        self.0.lock().expect("lock").push(seen);
    }
}

/// Each request is counted once, by plugin, by the `allowed_hosts` entry it matched as
/// written (or `other`, whatever host was asked for), and by the policy's answer.
#[tokio::test]
async fn requests_are_counted_by_plugin_entry_and_answer() {
    let live = serve_ok().await;
    let net = Arc::new(Scripted {
        answers: vec![
            ("api.example.com", vec![ip("93.184.216.34")]),
            ("inside.example.com", vec![ip("10.0.0.7")]),
        ],
        redirect: Some(live),
        ..Default::default()
    });
    let hosts: Vec<String> = ["api.example.com", "*.example.com:80", "gone.example.org:*"]
        .map(String::from)
        .to_vec();
    let policy = Arc::new(EgressPolicy::new(&hosts, Duration::from_secs(1), 1024).expect("valid"));
    let counter = Arc::new(Recorded::default());
    for url in [
        "http://api.example.com/v1?token=x",
        "http://inside.example.com/",
        "http://gone.example.org:8080/",
        "http://elsewhere.test/",
        "http://198.51.100.1:9/",
    ] {
        let shared: Arc<dyn EgressCounter> = counter.clone();
        let mut hooks = EgressHooks::with_network(policy.clone(), "billing".into(), net.clone())
            .counted(Some(shared));
        let sent = hooks.send_request(get(url), None, Box::new(async { Ok(()) }));
        let _ = Box::into_pin(sent).await;
    }
    let seen = counter.0.lock().expect("lock").clone();
    let seen: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|(p, h, r)| (p.as_str(), h.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("billing", "api.example.com", "allowed"),
            ("billing", "*.example.com:80", "denied"),
            ("billing", "gone.example.org:*", "unresolved"),
            ("billing", "other", "denied"),
            ("billing", "other", "denied"),
        ]
    );
}
