//! Opening a connection: plain for `amqp://`, through warren's own TLS configuration for
//! `amqps://` (`[broker.tls]`: CA, client certificate, server name), with the EXTERNAL login
//! when a client certificate stands in for a password; and what a failed TLS connect means.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use lapin::{ConnectionProperties, ErrorKind};

use super::Connects;
use crate::config::{BrokerSettings, BrokerUrl, default_client_config};

/// True when warren logs in on `url` with EXTERNAL (the broker takes the user from the
/// client certificate): it presents a client certificate, and the URL has no password and
/// names no mechanism of its own.
pub(super) fn external_login(url: &BrokerUrl, settings: &BrokerSettings) -> bool {
    let Ok(parsed) = url::Url::parse(url.expose()) else {
        return false;
    };
    settings.tls.as_ref().is_some_and(|t| t.has_client_cert())
        && parsed.password().is_none()
        && !parsed.query_pairs().any(|(key, _)| key == "auth_mechanism")
}

/// True when the URL names a user (`amqps://NAME@host`).
pub(super) fn names_user(url: &BrokerUrl) -> bool {
    url::Url::parse(url.expose()).is_ok_and(|u| !u.username().is_empty())
}

/// How long one TCP (and TLS) connect may take, and the AMQP handshake after it, unless the
/// URL says otherwise with `?connection_timeout=MS`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection to `url`: `amqp://` plainly, `amqps://` through `[broker.tls]` (or the
/// OS trust store without it). Every TCP (and TLS) connect lapin makes for it, the first and
/// those of its own recovery, is noted in `connects`, which also gives up on a handshake that
/// does not come (see [`Connects`]).
pub(super) async fn open(
    url: &BrokerUrl,
    settings: &BrokerSettings,
    properties: ConnectionProperties,
    connects: &Connects,
) -> lapin::Result<lapin::Connection> {
    let mut uri: AMQPUri = url
        .expose()
        .parse()
        .map_err(|e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tls = if uri.scheme == AMQPScheme::AMQPS {
        if external_login(url, settings) {
            uri.query.auth_mechanism = Some(SASLMechanism::External);
        }
        let tls = settings.tls.as_ref();
        let config = tls.map_or_else(default_client_config, |t| t.client_config());
        let server_name = tls
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| uri.authority.host.clone());
        Some((RustlsConnector::from(config), server_name))
    } else {
        None
    };
    let runtime = lapin::runtime::default_runtime()?;
    let watch = connects;
    let connects = connects.clone();
    let limit = uri
        .query
        .connection_timeout
        .map_or(CONNECT_TIMEOUT, Duration::from_millis);
    // lapin calls the closure again for each reconnection of its own. (Written in the call,
    // so that the runtime's type is known inside it.)
    let open = lapin::Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            if connects.abandoned() {
                return Err(
                    std::io::Error::other("warren stopped waiting for this connection").into(),
                );
            }
            let attempt = async {
                let host = (uri.authority.host.as_str(), uri.authority.port);
                let addresses: Vec<SocketAddr> = tokio::net::lookup_host(host).await?.collect();
                let stream = AsyncTcpStream::connect(&runtime, addresses).await?;
                if let AsyncTcpStream::Plain(plain) = &stream {
                    connects.connected(plain.get_ref().as_fd().try_clone_to_owned().ok());
                }
                match &tls {
                    Some((connector, server_name)) => {
                        Ok(stream.into_rustls(connector, server_name).await?)
                    }
                    None => Ok(stream),
                }
            };
            // lapin sets no limit of its own: a host that drops the packets (a machine powered
            // off, a firewall) would hold each attempt for the kernel's SYN retries (2 minutes).
            let stream: lapin::Result<_> = match tokio::time::timeout(limit, attempt).await {
                Ok(stream) => stream,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {} ms (the URL's connection_timeout)",
                        limit.as_millis()
                    ),
                )
                .into()),
            };
            connects.note(stream.is_ok());
            stream
        },
        properties,
    );
    watch.open(open, limit).await
}

/// What a failed connect to `url` means when TLS is the cause (or should have been used), as
/// a hint for the error; `None` if TLS has nothing to do with it.
pub(super) fn hint(
    error: &lapin::Error,
    url: &BrokerUrl,
    settings: &BrokerSettings,
) -> Option<String> {
    let tls = settings.tls.as_ref();
    let plain = url.expose().starts_with("amqp://");
    let io = match error.kind() {
        ErrorKind::IOError(io) => Some(io.as_ref()),
        _ => None,
    };
    if plain {
        // A TLS listener answers the AMQP header with a TLS alert, or hangs up.
        let hung_up = io.is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            )
        });
        let garbled = matches!(
            error.kind(),
            ErrorKind::ParsingError(_) | ErrorKind::InvalidProtocolVersion(_)
        );
        return (hung_up || garbled).then(|| {
            "the port closed the connection or answered in something other than AMQP: if it is \
             the broker's TLS port (usually 5671), write amqps:// (and [broker.tls] for a CA \
             of your own)"
                .to_owned()
        });
    }
    let rustls = io
        .and_then(|io| io.get_ref())
        .and_then(|e| e.downcast_ref::<rustls::Error>())?;
    let ca = match tls.and_then(|t| t.ca_file.as_ref()) {
        Some(file) => format!("a CA in broker.tls.ca_file ({})", file.display()),
        None => "a CA of the OS trust store (set broker.tls.ca_file to your own CA)".to_owned(),
    };
    let client = match tls.and_then(|t| t.cert_file.as_ref()) {
        Some(file) => format!("warren's certificate (broker.tls.cert_file, {})", file.display()),
        None => "the connection: it asks for a client certificate (set broker.tls.cert_file and key_file)".to_owned(),
    };
    Some(match rustls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }) => {
            format!(
                "the broker's certificate is not for the name warren checked ({}); set broker.tls.server_name to the name it was issued for",
                server_name_of(url, settings)
            )
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("the broker's certificate is not signed by {ca}")
        }
        rustls::Error::AlertReceived(_) => format!("the broker refused {client}"),
        rustls::Error::InvalidMessage(_) => {
            "the port does not speak TLS: write amqp:// for a plain port, or use the broker's TLS port (usually 5671)".to_owned()
        }
        _ => return None,
    })
}

fn server_name_of(url: &BrokerUrl, settings: &BrokerSettings) -> String {
    settings
        .tls
        .as_ref()
        .and_then(|t| t.server_name.clone())
        .or_else(|| {
            url::Url::parse(url.expose())
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// True for TLS failures that retrying cannot fix: a certificate refused either way.
pub(super) fn is_certificate_problem(error: &lapin::Error) -> bool {
    let ErrorKind::IOError(io) = error.kind() else {
        return false;
    };
    matches!(
        io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_))
    )
}
