//! Sends a plugin's HTTP request to the addresses the egress policy checked, over TCP or TLS.
//!
//! `wasmtime-wasi-http`'s default sender resolves the host name again when it connects; this one
//! connects to the checked socket addresses only, in order, and verifies TLS against the host
//! name.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// The future that drives the connection while the response body streams.
pub type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// Used when a timeout is not given (the egress hook always gives all three).
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How egress reaches the network: the name lookup and the TCP connect. [`System`] in the
/// daemon; tests substitute their own to script what a name resolves to and where connections go.
pub trait Network: Send + Sync + 'static {
    /// The addresses `host` resolves to, in the resolver's order.
    fn lookup(&self, host: &str, port: u16)
    -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;
    /// A TCP connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<TcpStream>> + Send;
}

/// The operating system's resolver and TCP stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Network for System {
    async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port))
            .await?
            .map(|a| a.ip())
            .collect())
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }
}

/// Connects to the first of `targets` that accepts within `timeout` each, trying them in
/// order; if none does, the error of the last one.
async fn connect_first<N: Network>(
    net: &N,
    targets: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::DestinationNotFound;
    for &target in targets {
        last = match tokio::time::timeout(timeout, net.connect(target)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Err(_) => HttpError::ConnectionTimeout,
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                HttpError::ConnectionRefused
            }
            Ok(Err(e)) => HttpError::Connect(e),
        };
        tracing::debug!(%target, error = %last, "HTTP connect failed; trying the next address");
    }
    Err(last)
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The error a plugin sees for a failed TLS handshake: `TLS-certificate-error` for a
/// certificate that does not verify, `TLS-alert-received` for an alert from the server,
/// `TLS-protocol-error` otherwise.
fn tls_error(error: io::Error) -> HttpError {
    let cause = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match cause {
        Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        Some(_) => HttpError::TlsProtocolError,
        None => HttpError::Tls(error),
    }
}

/// Connects to the first of `targets` that accepts (TLS with `tls`, verified against `host`),
/// sends `request` and returns the response, whose body errors after `between_bytes_timeout`
/// without data.
pub async fn send<N: Network>(
    net: &N,
    mut request: http::Request<WasiBody>,
    targets: &[SocketAddr],
    host: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    options: RequestOptions,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let connect_timeout = options.connect_timeout.unwrap_or(FALLBACK_TIMEOUT);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(FALLBACK_TIMEOUT);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(FALLBACK_TIMEOUT)
        .max(Duration::from_nanos(1));

    let tcp = connect_first(net, targets, connect_timeout).await?;
    let stream: Box<dyn Stream> = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = tokio::time::timeout(connect_timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(|error| {
                    tracing::warn!(host, %error, "HTTPS handshake failed");
                    tls_error(error)
                })?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;

    // On the wire the request line carries the path only (origin form); Host names the site.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let driver = wasmtime_wasi::runtime::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let io: IoFuture = Box::new(async move {
        driver.await.map_err(|e| {
            if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }
        })
    });
    let response = response.map(|body| {
        TimedBody {
            inner: body,
            timeout: between_bytes,
            idle: Box::pin(tokio::time::sleep(between_bytes)),
        }
        .boxed_unsync()
    });
    Ok((response, io))
}

/// A response body that fails when no data arrives for `timeout`.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
