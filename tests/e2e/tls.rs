//! TLS to the broker, against a RabbitMQ node of the test's own that listens only for TLS,
//! with certificates the test makes (rcgen): a good CA; mutual TLS with the EXTERNAL login
//! and a `server_name`; a wrong CA, refused naming the file; plain `amqp://` against the TLS
//! port, refused saying what to write instead.

use lapin::tcp::OwnedTLSConfig;

use crate::harness::{
    Broker, Node, NodeSpec, TestConfig, broker_url, collect_ids, unique, with_id, write_config_with,
};

/// The user the client certificate's common name stands for (`ssl_cert_login_from`).
const CLIENT_USER: &str = "warren-tls-client";
/// The DNS name of the node's certificate (besides 127.0.0.1).
const SERVER_NAME: &str = "rabbit.warren.test";

/// A CA, the server's certificate (for 127.0.0.1 and [`SERVER_NAME`]) and a client's (for
/// [`CLIENT_USER`]) it signed, and another CA that signed neither.
struct Pki {
    ca: String,
    other_ca: String,
    server: (String, String),
    client: (String, String),
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    rcgen::CertifiedIssuer::self_signed(params, key).expect("CA")
}

fn pki() -> Pki {
    let ca_issuer = ca("warren test broker CA");
    let issue = |names: Vec<String>, common_name: &str, usage: rcgen::ExtendedKeyUsagePurpose| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca_issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let server_names = vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()];
    Pki {
        server: issue(
            server_names,
            SERVER_NAME,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: issue(
            Vec::new(),
            CLIENT_USER,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ),
        ca: ca_issuer.pem(),
        other_ca: ca("warren test other CA").pem(),
    }
}

/// A node that listens only for TLS on its port: the server certificate, client certificates
/// checked against the CA when given (not required), EXTERNAL enabled (the user from the
/// certificate's common name), and the user [`CLIENT_USER`] with no password.
async fn tls_node(pki: &Pki) -> Node {
    let spec = NodeSpec {
        plugins: vec!["rabbitmq_auth_mechanism_ssl".to_owned()],
        conf: "listeners.tcp = none\n\
               listeners.ssl.default = {port}\n\
               ssl_options.cacertfile = {dir}/ca.pem\n\
               ssl_options.certfile = {dir}/server.pem\n\
               ssl_options.keyfile = {dir}/server.key\n\
               ssl_options.verify = verify_peer\n\
               ssl_options.fail_if_no_peer_cert = false\n\
               auth_mechanisms.1 = PLAIN\n\
               auth_mechanisms.2 = EXTERNAL\n\
               ssl_cert_login_from = common_name\n"
            .to_owned(),
        files: vec![
            ("ca.pem".to_owned(), pki.ca.clone().into_bytes()),
            ("server.pem".to_owned(), pki.server.0.clone().into_bytes()),
            ("server.key".to_owned(), pki.server.1.clone().into_bytes()),
        ],
        ..NodeSpec::default()
    };
    let node = Node::start("tls", &spec).await;
    node.ctl(&["add_user", CLIENT_USER, "unused"]).await;
    node.ctl(&["clear_password", CLIENT_USER]).await;
    node.ctl(&["set_permissions", "-p", "/", CLIENT_USER, ".*", ".*", ".*"])
        .await;
    node
}

/// The test's own client on the TLS node, trusting the test CA.
async fn test_client(node: &Node, pki: &Pki) -> Broker {
    let url = format!("amqps://guest:guest@127.0.0.1:{}/%2f", node.port());
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pki.ca.clone()),
    };
    Broker::connect_tls(&url, tls).await
}

/// The files a daemon's config refers to, written beside it.
fn cert_files(pki: &Pki) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("certs/ca.pem", pki.ca.clone().into_bytes()),
        ("certs/other-ca.pem", pki.other_ca.clone().into_bytes()),
        ("certs/client.pem", pki.client.0.clone().into_bytes()),
        ("certs/client.key", pki.client.1.clone().into_bytes()),
    ]
}

/// Starts a daemon from `config` (with the certificates beside it), runs `N` messages
/// through it (republished by the tagging plugin from `queue` to `out`) and stops it.
async fn messages_flow(
    config: &TestConfig,
    client: &Broker,
    queue: &str,
    out: &str,
    files: &[(&str, Vec<u8>)],
) {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    let (dir, path) = write_config_with(&config.build(), &files);
    let daemon = crate::harness::start_at(dir, &path).await;
    const N: usize = 20;
    for i in 0..N {
        client
            .publish(queue, b"over TLS", with_id(format!("t{i}")))
            .await;
    }
    let seen = collect_ids(client, out, N).await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(seen.len(), N, "every message came through");
}

/// The broker at `url`, tagging `queue` into `out`, with these `[broker.tls]` lines.
fn tls_config(url: &str, tls: &str, queue: &str, out: &str, name: &str) -> TestConfig {
    TestConfig::with_url(url)
        .connection_name(name)
        .broker_tls(tls)
        .tagged("tls", queue, out, "")
}

/// All four cases on one node (a node takes seconds of CPU to boot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_broker() {
    let pki = pki();
    let node = tls_node(&pki).await;
    let client = test_client(&node, &pki).await;
    good_ca(&node, &pki, &client).await;
    mutual_tls_with_external_login(&node, &pki, &client).await;
    wrong_ca_is_refused_naming_the_file(&node, &pki).await;
    plain_amqp_on_the_tls_port_says_to_use_amqps(&node).await;
    amqps_on_a_plain_port_says_so().await;
    client.cleanup().await;
}

/// `ca_file` alone: warren verifies the broker's certificate (issued for 127.0.0.1) against
/// the test CA and logs in with the URL's user and password.
async fn good_ca(node: &Node, pki: &Pki, client: &Broker) {
    let (queue, out) = (unique("tls-ca"), unique("tls-ca-out"));
    client.queue(&out).await;
    client.forget_later_queue(&queue);
    let url = format!("amqps://guest:guest@127.0.0.1:{}/%2f", node.port());
    let config = tls_config(
        &url,
        "ca_file = \"certs/ca.pem\"",
        &queue,
        &out,
        "warren-tls-ca",
    );
    messages_flow(&config, client, &queue, &out, &cert_files(pki)).await;
}

/// Mutual TLS: warren presents its client certificate; the URL has no password, so warren
/// logs in with EXTERNAL and the broker takes the user from the certificate. The URL's host
/// is an IP address; `server_name` is the DNS name the certificate is checked against.
async fn mutual_tls_with_external_login(node: &Node, pki: &Pki, client: &Broker) {
    let (queue, out) = (unique("tls-mutual"), unique("tls-mutual-out"));
    client.queue(&out).await;
    client.forget_later_queue(&queue);
    let url = format!("amqps://127.0.0.1:{}/%2f", node.port());
    let tls = format!(
        "ca_file = \"certs/ca.pem\"\ncert_file = \"certs/client.pem\"\nkey_file = \"certs/client.key\"\nserver_name = \"{SERVER_NAME}\""
    );
    let name = "warren-tls-mutual";
    let config = tls_config(&url, &tls, &queue, &out, name);
    let files = cert_files(pki);
    let file_refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    let (dir, path) = write_config_with(&config.build(), &file_refs);
    let daemon = crate::harness::start_at(dir, &path).await;
    let listing = node
        .ctl(&[
            "list_connections",
            "user",
            "auth_mechanism",
            "ssl",
            "client_properties",
            "--no-table-headers",
        ])
        .await;
    let ours: Vec<&str> = listing.lines().filter(|l| l.contains(name)).collect();
    assert_eq!(ours.len(), 2, "both of warren's connections: {listing}");
    for line in ours {
        assert!(
            line.starts_with(&format!("{CLIENT_USER}\tEXTERNAL\ttrue")),
            "logged in as the certificate's user, with EXTERNAL, over TLS: {line}"
        );
    }
    for i in 0..10 {
        client
            .publish(&queue, b"mutual", with_id(format!("m{i}")))
            .await;
    }
    let seen = collect_ids(client, &out, 10).await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(seen.len(), 10);
}

/// The start-up error of a daemon on `config` (with the certificates beside it).
async fn start_error(config: &TestConfig, pki: Option<&Pki>) -> warren::app::StartError {
    let files = pki.map(cert_files).unwrap_or_default();
    let file_refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    let (_dir, path) = write_config_with(&config.build(), &file_refs);
    let config = warren::config::Config::load(&path).expect("a valid config");
    let shutdown = tokio_util::sync::CancellationToken::new();
    match warren::app::Daemon::start(config, shutdown).await {
        Ok(_) => panic!("the daemon started"),
        Err(e) => e,
    }
}

/// A `ca_file` that did not sign the broker's certificate: warren does not start; the
/// error names the file and says the certificate is not signed by it (exit code 78: a
/// matter of configuration, not retried).
async fn wrong_ca_is_refused_naming_the_file(node: &Node, pki: &Pki) {
    let url = format!("amqps://guest:guest@127.0.0.1:{}/%2f", node.port());
    let config = tls_config(
        &url,
        "ca_file = \"certs/other-ca.pem\"",
        &unique("tls-wrong"),
        &unique("tls-wrong-out"),
        "warren-tls-wrong",
    );
    let error = start_error(&config, Some(pki)).await;
    let text = error.to_string();
    eprintln!("tls: a wrong CA: {text}");
    assert!(
        text.contains("not signed by")
            && text.contains(&format!("certs{}other-ca.pem", std::path::MAIN_SEPARATOR)),
        "{text}"
    );
    assert_eq!(error.exit_code(), warren::exit::CONFIG, "{text}");
}

/// Plain `amqp://` against the TLS port: warren does not start, and the error says to
/// write `amqps://`.
async fn plain_amqp_on_the_tls_port_says_to_use_amqps(node: &Node) {
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port());
    let config = TestConfig::with_url(&url)
        .broker_lines("startup_timeout_ms = 2000")
        .tagged("tls", &unique("tls-plain"), &unique("tls-plain-out"), "");
    let error = start_error(&config, None).await;
    let text = error.to_string();
    eprintln!("tls: amqp:// on the TLS port: {text}");
    assert!(text.contains("write amqps://"), "{text}");
}

/// `amqps://` against a plain AMQP port (the shared test broker's, which it does not disturb:
/// the connection fails in the TLS handshake, before AMQP): warren does not start, and the error says the port does not
/// speak TLS.
async fn amqps_on_a_plain_port_says_so() {
    let url = broker_url().replacen("amqp://", "amqps://", 1);
    let config = TestConfig::with_url(&url)
        .broker_lines("startup_timeout_ms = 2000")
        .tagged("tls", &unique("tls-no"), &unique("tls-no-out"), "");
    let text = start_error(&config, None).await.to_string();
    eprintln!("tls: amqps:// on a plain port: {text}");
    assert!(text.contains("does not speak TLS"), "{text}");
}
