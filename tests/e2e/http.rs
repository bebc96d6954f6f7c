//! The http-executor plugin through the daemon, against HTTP servers on loopback started here:
//! requests and replies, the host-enforced egress policy, timeouts, retries, dead-lettering.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::any;
use lapin::BasicProperties;
use serde_json::{Value, json};

use crate::support::{
    Broker, TestConfig, dead_letters_to, header as amqp_header, shipped_plugin, start_at, unique,
    write_config_with,
};

/// How long the `/slow` endpoint takes to answer: longer than any plugin's HTTP timeout here.
const SLOW: Duration = Duration::from_secs(5);

/// An HTTP server on loopback that counts every request it gets.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicUsize>,
}

/// Serves `/echo` (method, headers and body back as JSON), `/redirect?to=URL` (302),
/// `/big?n=BYTES` (a body of that many bytes, with its `Content-Length`) and `/slow` (answers
/// after 5 s) on `bind`.
pub(crate) async fn serve(bind: &str) -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(any(
        move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                match uri.path() {
                    "/redirect" => {
                        let to = uri
                            .query()
                            .and_then(|q| q.strip_prefix("to="))
                            .unwrap_or("/");
                        (
                            StatusCode::FOUND,
                            [(header::LOCATION, to.to_owned())],
                            String::new(),
                        )
                            .into_response()
                    }
                    "/big" => {
                        let n: usize = uri
                            .query()
                            .and_then(|q| q.strip_prefix("n="))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        "x".repeat(n).into_response()
                    }
                    "/slow" => {
                        tokio::time::sleep(SLOW).await;
                        "late".into_response()
                    }
                    _ => {
                        let headers: serde_json::Map<String, Value> = headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                            .collect();
                        (
                            StatusCode::CREATED,
                            axum::Json(json!({
                                "method": method.as_str(),
                                "path": uri.path(),
                                "headers": headers,
                                "body": String::from_utf8_lossy(&body),
                            })),
                        )
                            .into_response()
                    }
                }
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .expect("bind test server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, hits }
}

struct Setup {
    broker: Broker,
    queue: String,
    replies: String,
    dlq: String,
}

/// A daemon running http-executor on a fresh queue with a dead-letter queue: the plugin may
/// reach the `allowed` hosts, gets `plugin_config` (`max_attempts = "3"`), and has `extra`
/// lines (`http_timeout_ms = 300`).
async fn setup(
    name: &str,
    allowed: &[String],
    plugin_config: &str,
    extra: &str,
) -> (Setup, crate::support::Running) {
    setup_with_files(name, allowed, plugin_config, extra, &[]).await
}

/// As [`setup`], with `files` (relative path, contents) written next to the config file.
async fn setup_with_files(
    name: &str,
    allowed: &[String],
    plugin_config: &str,
    extra: &str,
    files: &[(&str, &[u8])],
) -> (Setup, crate::support::Running) {
    let broker = Broker::connect().await;
    let queue = unique(name);
    let replies = unique(&format!("{name}-replies"));
    let dlq = unique(&format!("{name}-dlq"));
    let dlx = unique(&format!("{name}-dlx"));
    broker.queue(&replies).await;
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    let allowed: Vec<String> = allowed.iter().map(|h| format!("{h:?}")).collect();
    let plugin_extra = format!("allowed_hosts = [{}]\n{extra}", allowed.join(", "));
    let http = shipped_plugin("http_executor");
    let config = TestConfig::new()
        .grace_ms(2_000)
        .plugin("http", &http, plugin_config, &plugin_extra)
        .queue(&queue, &dead_letters_to(&dlx))
        .pipeline("http", &queue, "http", "");
    let (dir, path) = write_config_with(&config.build(), files);
    let daemon = start_at(dir, &path).await;
    (
        Setup {
            broker,
            queue,
            replies,
            dlq,
        },
        daemon,
    )
}

impl Setup {
    async fn request(&self, body: Value, correlation: &str) {
        self.broker
            .publish(
                &self.queue,
                body.to_string().as_bytes(),
                BasicProperties::default()
                    .with_reply_to(self.replies.as_str().into())
                    .with_correlation_id(correlation.into()),
            )
            .await;
    }

    async fn reply(&self) -> (String, Value) {
        let m = self.broker.next(&self.replies).await;
        let correlation = m
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        let body = serde_json::from_slice(&m.delivery.data).expect("reply is JSON");
        (correlation, body)
    }
}

/// GET and POST reach the server with method, headers and body; the reply arrives on
/// `reply_to` with status, body and correlation id, and the request is acked.
#[tokio::test]
async fn get_and_post_reach_the_server_and_reply() {
    let server = serve("127.0.0.1:0").await;
    let (s, daemon) = setup("http-ok", &[server.addr.to_string()], "", "").await;
    let base = format!("http://{}", server.addr);
    s.request(
        json!({"url": format!("{base}/get-me"), "headers": {"x-token": "t1"}}),
        "c-get",
    )
    .await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "c-get");
    assert_eq!(reply["status"], 201);
    let echoed: Value =
        serde_json::from_str(reply["body"].as_str().expect("text body")).expect("JSON");
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/get-me");
    assert_eq!(echoed["headers"]["x-token"], "t1");

    s.request(
        json!({"method": "POST", "url": format!("{base}/post-me"), "headers": {"content-type": "text/plain"}, "body": "hello body"}),
        "c-post",
    )
    .await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "c-post");
    let echoed: Value =
        serde_json::from_str(reply["body"].as_str().expect("text body")).expect("JSON");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], "hello body");
    assert_eq!(echoed["headers"]["content-type"], "text/plain");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    daemon.stop().await.expect("clean stop");
    assert_eq!(s.broker.ready(&s.queue).await, 0);
    assert!(s.broker.get(&s.dlq).await.is_none());
    s.broker.cleanup().await;
}

/// Hosts not on the list, the metadata address in two spellings, `[::1]`, and a redirect from an
/// allowed URL to a forbidden one: the forbidden listeners get no request at all; each request
/// is counted in `warren_egress_requests_total`.
#[tokio::test]
async fn egress_policy_blocks_before_any_connection() {
    let allowed = serve("127.0.0.1:0").await;
    let forbidden = serve("127.0.0.1:0").await;
    let forbidden_v6 = serve("[::1]:0").await;
    let (s, daemon) = setup("http-deny", &[allowed.addr.to_string()], "", "").await;
    let denied_urls = [
        format!("http://{}/secret", forbidden.addr),
        format!("http://localhost:{}/secret", forbidden.addr.port()),
        format!("http://[::1]:{}/secret", forbidden_v6.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://2852039166/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
    ];
    for (i, url) in denied_urls.iter().enumerate() {
        s.request(json!({"url": url}), &format!("deny-{i}")).await;
    }
    for _ in &denied_urls {
        let (correlation, reply) = s.reply().await;
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains("denied"), "{correlation}: {reply}");
        assert_eq!(reply["attempts"], 1, "not retried: {correlation}: {reply}");
        assert!(reply.get("status").is_none(), "{correlation}: {reply}");
    }
    // Denied requests are rejected at once: all end in the dead-letter queue.
    for _ in &denied_urls {
        s.broker.next(&s.dlq).await;
    }
    // An allowed URL that redirects to the forbidden one: the redirect is the result.
    let redirect = format!(
        "http://{}/redirect?to=http://{}/secret",
        allowed.addr, forbidden.addr
    );
    s.request(json!({"url": redirect}), "redirect").await;
    let (_, reply) = s.reply().await;
    assert_eq!(reply["status"], 302);
    // Counted by plugin and host: the allowed entry as written, the denied hosts as `other`.
    let counted = |host: &str, result: &str| {
        let labels = [("plugin", "http"), ("host", host), ("result", result)];
        daemon.metric("warren_egress_requests_total", &labels)
    };
    assert_eq!(counted(&allowed.addr.to_string(), "allowed"), 1.0);
    assert_eq!(counted("other", "denied"), denied_urls.len() as f64);
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        forbidden.hits.load(Ordering::SeqCst),
        0,
        "the forbidden listener was reached"
    );
    assert_eq!(
        forbidden_v6.hits.load(Ordering::SeqCst),
        0,
        "[::1] was reached"
    );
    assert_eq!(allowed.hits.load(Ordering::SeqCst), 1);
    s.broker.cleanup().await;
}

/// `max_attempts` of the retry test.
const ATTEMPTS: u32 = 3;

/// A request that times out, and one whose connection is refused, are retried up to
/// `max_attempts` and then dead-lettered with an error reply.
#[tokio::test]
async fn transport_failures_are_retried_then_dead_lettered() {
    let slow = serve("127.0.0.1:0").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed); // nothing listens there now: connection refused
    let (s, daemon) = setup(
        "http-retry",
        &[slow.addr.to_string(), closed_addr.to_string()],
        &format!("max_attempts = \"{ATTEMPTS}\""),
        "http_timeout_ms = 300",
    )
    .await;
    s.request(json!({"url": format!("http://{}/slow", slow.addr)}), "slow")
        .await;
    s.request(json!({"url": format!("http://{closed_addr}/")}), "refused")
        .await;
    let mut replies = Vec::new();
    for _ in 0..2 {
        let (correlation, reply) = s.reply().await;
        assert_eq!(reply["attempts"], ATTEMPTS, "{correlation}: {reply}");
        assert!(reply["error"].is_string());
        replies.push(correlation);
    }
    replies.sort();
    assert_eq!(replies, ["refused", "slow"]);
    for _ in 0..2 {
        let dead = s.broker.next(&s.dlq).await;
        assert_eq!(
            amqp_header(&dead.delivery.properties, "x-warren-attempt").and_then(integer),
            Some(i64::from(ATTEMPTS)),
            "the dead-lettered message carries its attempt count"
        );
    }
    assert_eq!(
        slow.hits.load(Ordering::SeqCst),
        ATTEMPTS as usize,
        "every attempt reached the slow server"
    );
    daemon.stop().await.expect("clean stop");
    s.broker.cleanup().await;
}

/// `max_response_bytes` of the cap test.
const CAP: usize = 1000;

/// `max_response_bytes` caps what a plugin can receive: a response that announces a bigger
/// body is refused by the host, and the executor dead-letters the request at once (one hit on
/// the server, no retry) with an error reply; a response within the cap is delivered whole.
#[tokio::test]
async fn responses_over_the_cap_are_refused_not_retried() {
    let server = serve("127.0.0.1:0").await;
    let (s, daemon) = setup(
        "http-cap",
        &[server.addr.to_string()],
        "",
        &format!("max_response_bytes = {CAP}"),
    )
    .await;
    let big = |n: usize| json!({"url": format!("http://{}/big?n={n}", server.addr)});
    s.request(big(CAP), "fits").await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "fits");
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"].as_str().map(str::len), Some(CAP));
    s.request(big(CAP + 1), "too-big").await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "too-big");
    let error = reply["error"].as_str().expect("an error reply");
    assert!(error.contains("too large"), "{error}");
    assert_eq!(reply["attempts"], 1, "not retried: {reply}");
    s.broker.next(&s.dlq).await;
    assert_eq!(server.hits.load(Ordering::SeqCst), 2, "one hit each");
    daemon.stop().await.expect("clean stop");
    s.broker.cleanup().await;
}

/// A body that is not a request is rejected at once, with an error reply.
#[tokio::test]
async fn malformed_requests_are_dead_lettered_at_once() {
    let (s, daemon) = setup("http-bad", &[], "", "").await;
    s.broker
        .publish(
            &s.queue,
            b"{not json",
            BasicProperties::default()
                .with_reply_to(s.replies.as_str().into())
                .with_correlation_id("bad-json".into()),
        )
        .await;
    s.request(json!({"method": "GET"}), "no-url").await;
    for _ in 0..2 {
        let (correlation, reply) = s.reply().await;
        assert!(reply["error"].is_string(), "{correlation}: {reply}");
    }
    let mut dead = [
        String::from_utf8_lossy(&s.broker.next(&s.dlq).await.delivery.data).into_owned(),
        String::from_utf8_lossy(&s.broker.next(&s.dlq).await.delivery.data).into_owned(),
    ];
    dead.sort();
    assert_eq!(dead[1], "{not json");
    daemon.stop().await.expect("clean stop");
    s.broker.cleanup().await;
}

fn integer(value: &lapin::types::AMQPValue) -> Option<i64> {
    use lapin::types::AMQPValue::*;
    match value {
        LongLongInt(i) => Some(*i),
        LongInt(i) => Some(i64::from(*i)),
        ShortInt(i) => Some(i64::from(*i)),
        ShortShortInt(i) => Some(i64::from(*i)),
        LongUInt(i) => Some(i64::from(*i)),
        _ => None,
    }
}

/// A plugin config that makes one attempt only: a failure is final.
const ONE_ATTEMPT: &str = r#"max_attempts = "1""#;

/// The first byte of a TLS handshake record (a ClientHello's).
const TLS_HANDSHAKE: u8 = 0x16;

/// `https://` goes to the checked address with TLS: a raw listener on the allowed address
/// receives a TLS ClientHello; its handshake fails (it is not a TLS server), which is a
/// transport failure: with `max_attempts = 1` the message is dead-lettered with an error reply.
#[tokio::test]
async fn https_connects_with_tls_to_the_checked_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let first_byte = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.expect("a byte");
        byte[0]
    });
    let (s, daemon) = setup(
        "https",
        &[addr.to_string()],
        ONE_ATTEMPT,
        "http_timeout_ms = 2000",
    )
    .await;
    s.request(json!({"url": format!("https://{addr}/")}), "tls")
        .await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "tls");
    assert!(reply["error"].is_string(), "{reply}");
    assert_eq!(
        first_byte.await.expect("listener"),
        TLS_HANDSHAKE,
        "a TLS handshake record reached the checked address"
    );
    s.broker.next(&s.dlq).await;
    daemon.stop().await.expect("clean stop");
    s.broker.cleanup().await;
}

/// A denied request's log line names scheme, host and port only: the path and query, where
/// tokens live, never reach the log.
#[test]
fn denied_requests_are_logged_without_path_or_query() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["plugin", "run"])
        .arg(shipped_plugin("http_executor"))
        .args([
            "--body",
            r#"{"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials?token=hunter2"}"#,
            "--reply-to",
            "replies",
        ])
        .env("RUST_LOG", "info")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let denied = stderr
        .lines()
        .find(|line| line.contains("HTTP request denied"))
        .unwrap_or_else(|| panic!("no denied line in:\n{stderr}"));
    assert!(denied.contains("http://169.254.169.254:80"), "{denied}");
    for secret in ["hunter2", "token", "security-credentials", "/latest"] {
        assert!(!stderr.contains(secret), "{secret:?} logged:\n{stderr}");
    }
}

/// A test certificate authority and a server certificate it issued for `localhost`.
struct TestPki {
    ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn test_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "warren test internal CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    TestPki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// An HTTPS server on 127.0.0.1 presenting `pki`'s certificate; every request that gets
/// through the handshake is counted and answered `200 internal ok`.
async fn serve_https(pki: &TestPki) -> Server {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\ninternal ok")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, hits }
}

/// An internal HTTPS service whose certificate comes from a private CA: with the CA in the
/// plugin's `ca_file` (relative to the config file) the request succeeds; without it the
/// handshake fails and the plugin sees a TLS certificate error.
#[tokio::test]
async fn https_to_an_internal_ca_needs_its_ca_file() {
    let pki = test_pki();
    let server = serve_https(&pki).await;
    let allowed = [format!("localhost:{}", server.addr.port())];
    let url = format!("https://localhost:{}/internal", server.addr.port());

    let (s, daemon) = setup_with_files(
        "https-ca",
        &allowed,
        ONE_ATTEMPT,
        "ca_file = \"certs/internal-ca.pem\"",
        &[("certs/internal-ca.pem", pki.ca_pem.as_bytes())],
    )
    .await;
    s.request(json!({"url": url}), "with-ca").await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "with-ca");
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"], "internal ok", "{reply}");
    daemon.stop().await.expect("clean stop");
    s.broker.cleanup().await;

    let (s, daemon) = setup("https-no-ca", &allowed, ONE_ATTEMPT, "").await;
    s.request(json!({"url": url}), "without-ca").await;
    let (correlation, reply) = s.reply().await;
    assert_eq!(correlation, "without-ca");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.contains("TlsCertificateError"), "{reply}");
    s.broker.next(&s.dlq).await;
    daemon.stop().await.expect("clean stop");
    s.broker.cleanup().await;
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "only the request with the CA got past the handshake"
    );
}

/// HTTPS egress trusts the OS trust store (read with rustls-native-certs, which takes
/// `SSL_CERT_FILE` in place of the system bundle): the same server is trusted when the store
/// holds its CA, and refused with a TLS certificate error when the store is the system's.
#[tokio::test]
async fn https_trusts_the_os_trust_store() {
    let pki = test_pki();
    let server = serve_https(&pki).await;
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("os-store.pem");
    std::fs::write(&store, &pki.ca_pem).expect("write");
    let port = server.addr.port();
    let run = |store: Option<&std::path::Path>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"));
        command
            .args(["plugin", "run"])
            .arg(shipped_plugin("http_executor"))
            .args(["--allow-host", &format!("localhost:{port}")])
            .args(["--reply-to", "replies", "-c", "max_attempts=1", "--body"])
            .arg(json!({"url": format!("https://localhost:{port}/")}).to_string())
            .env_remove("SSL_CERT_DIR")
            .env_remove("SSL_CERT_FILE");
        if let Some(store) = store {
            command.env("SSL_CERT_FILE", store);
        }
        async move {
            let out = command.output().await.expect("run");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let json = &stdout[stdout.find('{').expect("JSON report")..];
            let report: Value = serde_json::from_str(json).expect("JSON report");
            let reply = report["publishes"][0]["body"].as_str().expect("a reply");
            serde_json::from_str::<Value>(reply).expect("reply JSON")
        }
    };
    let trusted = run(Some(&store)).await;
    assert_eq!(trusted["status"], 200, "{trusted}");
    assert_eq!(trusted["body"], "internal ok", "{trusted}");
    let untrusted = run(None).await;
    let error = untrusted["error"].as_str().unwrap_or_default();
    assert!(error.contains("TlsCertificateError"), "{untrusted}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

/// A `ca_file` that is missing, not PEM, or holds no certificate is a config error naming the
/// key and the file.
#[test]
fn bad_ca_files_are_config_errors() {
    for (contents, says) in [
        (None, "cannot read"),
        (Some("not a certificate"), "holds no PEM certificate"),
        (
            Some("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            "not valid PEM",
        ),
    ] {
        let config = TestConfig::new().default_grace().plugin(
            "http",
            &shipped_plugin("http_executor"),
            "",
            "ca_file = \"certs/ca.pem\"",
        );
        let files: Vec<(&str, &[u8])> = contents
            .map(|contents| ("certs/ca.pem", contents.as_bytes()))
            .into_iter()
            .collect();
        let (dir, path) = write_config_with(&config.build(), &files);
        let error = format!(
            "{:#}",
            warren::config::Config::load(&path).expect_err("refused")
        );
        assert!(
            error.contains("plugins.http.ca_file")
                && error.contains(&dir.path().join("certs/ca.pem").display().to_string())
                && error.contains(says),
            "{error}"
        );
    }
}
