//! Sends one [`Request`] through `wasi:http/outgoing-handler` and collects
//! the whole response, or says why there is none.

use std::time::Duration;

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method,
    OutgoingBody, OutgoingRequest, RequestOptions, Scheme as WasiScheme,
};
use wasi::io::streams::StreamError;

use crate::request::{Request, Scheme};

/// The most `blocking-write-and-flush` takes at once.
const WRITE_CHUNK: usize = 4096;
/// How much one read asks for.
const READ_CHUNK: u64 = 64 * 1024;

/// A response, read to the end. Any status is a response: 3xx are not followed.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Names and values in the order the host gave them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Why there is no response.
#[derive(Debug)]
pub struct Failure {
    /// For logs and the error reply.
    pub reason: String,
    /// True if trying again cannot help: the host's egress policy denied the
    /// request, the host found the request itself invalid, or the response
    /// announced a body over the host's `max_response_bytes`.
    pub permanent: bool,
}

impl Failure {
    /// A failure that trying again cannot help.
    fn permanent(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            permanent: true,
        }
    }

    /// A failure worth another attempt.
    fn transient(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            permanent: false,
        }
    }
}

impl From<ErrorCode> for Failure {
    fn from(code: ErrorCode) -> Failure {
        let permanent = matches!(
            code,
            ErrorCode::HttpRequestDenied
                | ErrorCode::DestinationIpProhibited
                | ErrorCode::HttpRequestMethodInvalid
                | ErrorCode::HttpRequestUriInvalid
                | ErrorCode::HttpRequestBodySize(_)
                | ErrorCode::HttpResponseBodySize(_)
        );
        Failure {
            reason: describe(&code),
            permanent,
        }
    }
}

/// Sends `request` (with `timeout` for connecting, the first byte and between
/// bytes, if given) and reads the whole response.
pub fn send(request: &Request, timeout: Option<Duration>) -> Result<Response, Failure> {
    let outgoing = build(request)?;
    // Taken before `handle` consumes the request, written after it, so the
    // host is already sending while the body streams out.
    let body = if request.body.is_empty() {
        None
    } else {
        Some(
            outgoing
                .body()
                .map_err(|()| Failure::permanent("the request body was already taken"))?,
        )
    };
    let future = outgoing_handler::handle(outgoing, timeout.map(options))?;
    if let Some(body) = body {
        // A failed write still ends in the response future: the server may
        // have answered early (413), or the host fails the request with the
        // real cause. So its outcome is what counts.
        if let Err(failure) = write_body(body, &request.body) {
            warren_plugin::log::debug(format!("writing the request body: {}", failure.reason));
        }
    }
    collect(wait(&future)?)
}

/// The `wasi:http` request for `request`, without its body.
fn build(request: &Request) -> Result<OutgoingRequest, Failure> {
    let headers = Fields::from_list(&request.headers)
        .map_err(|error| Failure::permanent(format!("request headers refused: {error:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let scheme = match request.scheme {
        Scheme::Http => WasiScheme::Http,
        Scheme::Https => WasiScheme::Https,
    };
    let refused = |what: &str| Failure::permanent(format!("the host refused the {what}"));
    outgoing
        .set_method(&method(&request.method))
        .map_err(|()| refused("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(&request.authority))
        .map_err(|()| refused("host"))?;
    outgoing
        .set_path_with_query(Some(&request.path_with_query))
        .map_err(|()| refused("path"))?;
    Ok(outgoing)
}

/// The `wasi:http` method for an upper-case method name.
fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

/// Connect, first-byte and between-bytes timeouts of `timeout` each.
fn options(timeout: Duration) -> RequestOptions {
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    // A host that does not support one of them refuses it; its own limits
    // apply then, so the refusals are ignored.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    options
}

/// Writes all of `bytes` to the request body and finishes it.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), Failure> {
    {
        let stream = body
            .write()
            .map_err(|()| Failure::permanent("the request body stream was already taken"))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(stream_failure)?;
        }
        // The stream, a child of the body, is dropped before the body is finished.
    }
    OutgoingBody::finish(body, None)?;
    Ok(())
}

/// Waits for the response's status and headers.
fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, Failure> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(code.into()),
            Some(Err(())) => return Err(Failure::transient("the response was already taken")),
            None => future.subscribe().block(),
        }
    }
}

/// Reads the status, the headers and the whole body of `response`.
fn collect(response: IncomingResponse) -> Result<Response, Failure> {
    let status = response.status();
    let headers = response.headers().entries();
    let body = response
        .consume()
        .map_err(|()| Failure::transient("the response body was already taken"))?;
    let bytes = read_all(&body)?;
    // Trailers are not reported; finishing releases the body.
    drop(IncomingBody::finish(body));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

/// Reads `body` until the host closes it.
fn read_all(body: &IncomingBody) -> Result<Vec<u8>, Failure> {
    let stream = body
        .stream()
        .map_err(|()| Failure::transient("the response body stream was already taken"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(error) => return Err(stream_failure(error)),
        }
    }
}

/// A failed stream operation, with the HTTP error behind it if there is one.
fn stream_failure(error: StreamError) -> Failure {
    match error {
        StreamError::Closed => Failure::transient("the stream was closed early"),
        StreamError::LastOperationFailed(error) => {
            match wasi::http::types::http_error_code(&error) {
                Some(code) => code.into(),
                None => Failure::transient(error.to_debug_string()),
            }
        }
    }
}

/// A short text for an error code.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => "request denied by the host's egress policy".into(),
        ErrorCode::DestinationIpProhibited => "destination address prohibited by the host".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "timed out reading the response".into(),
        ErrorCode::ConnectionWriteTimeout => "timed out writing the request".into(),
        ErrorCode::ConnectionTerminated => "connection closed by the server".into(),
        ErrorCode::DnsTimeout => "DNS timed out".into(),
        ErrorCode::DnsError(payload) => match &payload.rcode {
            Some(rcode) => format!("DNS error: {rcode}"),
            None => "DNS error".into(),
        },
        ErrorCode::HttpResponseBodySize(Some(limit)) => {
            format!("response body too large (limit {limit} bytes)")
        }
        ErrorCode::HttpResponseBodySize(None) => "response body too large".into(),
        ErrorCode::InternalError(Some(text)) => format!("host error: {text}"),
        other => {
            let debug = format!("{other:?}");
            debug
                .strip_prefix("ErrorCode::")
                .map_or(debug.clone(), str::to_owned)
        }
    }
}
