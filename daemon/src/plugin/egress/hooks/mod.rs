//! The `wasi:http` hooks: every request a plugin sends passes the policy (and is counted by
//! its answer), goes to the checked addresses, and has its response capped.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::{Denied, EgressPolicy, normalise};
use crate::plugin::http_client::{self, Network, System};

/// The policy's answer to one request, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressResult {
    /// Allowed: sent to the checked addresses.
    Allowed,
    /// Refused: not in `allowed_hosts`, or resolving to an address that must be listed.
    Denied,
    /// An allowed name that did not resolve (or not in time).
    Unresolved,
}

impl EgressResult {
    /// The policy's answer to a request.
    fn of<T>(decision: &Result<T, Denied>) -> Self {
        match decision {
            Ok(_) => Self::Allowed,
            Err(Denied::NotListed(_) | Denied::Internal { .. }) => Self::Denied,
            Err(Denied::Unresolved(_) | Denied::DnsTimeout(..)) => Self::Unresolved,
        }
    }

    /// `allowed`, `denied` or `unresolved`: the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Unresolved => "unresolved",
        }
    }
}

/// Where each request's answer is counted (the daemon's metrics): by plugin, and by host as
/// [`EgressPolicy::host_label`] names it.
pub trait EgressCounter: Send + Sync {
    /// Counts one request of `plugin` to `host`.
    fn count(&self, plugin: &str, host: &str, result: EgressResult);
}

/// The `wasi:http` hooks of one plugin instance: every request passes [`EgressPolicy::check`].
#[derive(Clone)]
pub struct EgressHooks<N: Network = System> {
    policy: Arc<EgressPolicy>,
    plugin: Arc<str>,
    net: Arc<N>,
    counter: Option<Arc<dyn EgressCounter>>,
}

impl EgressHooks {
    /// Hooks enforcing `policy` for `plugin`, on the operating system's network.
    pub fn new(policy: Arc<EgressPolicy>, plugin: Arc<str>) -> Self {
        Self::with_network(policy, plugin, Arc::new(System))
    }
}

impl<N: Network> EgressHooks<N> {
    /// Hooks enforcing `policy` for `plugin`, resolving and connecting through `net`.
    pub fn with_network(policy: Arc<EgressPolicy>, plugin: Arc<str>, net: Arc<N>) -> Self {
        Self {
            policy,
            plugin,
            net,
            counter: None,
        }
    }

    /// Where these hooks count requests, if anywhere.
    pub fn counter(&self) -> Option<Arc<dyn EgressCounter>> {
        self.counter.clone()
    }

    /// The same hooks, counting each request's answer in `counter`.
    pub fn counted(self, counter: Option<Arc<dyn EgressCounter>>) -> Self {
        Self { counter, ..self }
    }
}

/// A request's URL as logs may show it: scheme, host and port, never user info, path or
/// query, where tokens live.
fn shown(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let default_port = if scheme == "https" { 443 } else { 80 };
    match uri.authority() {
        Some(authority) => format!(
            "{scheme}://{}:{}",
            authority.host().to_ascii_lowercase(),
            authority.port_u16().unwrap_or(default_port)
        ),
        None => format!("{scheme}://?"),
    }
}

fn clamp(options: Option<RequestOptions>, limit: Duration) -> RequestOptions {
    let pick = |asked: Option<Duration>| Some(asked.map_or(limit, |d| d.min(limit)));
    let asked = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: pick(asked.connect_timeout),
        first_byte_timeout: pick(asked.first_byte_timeout),
        between_bytes_timeout: pick(asked.between_bytes_timeout),
    }
}

type Response = (http::Response<WasiBody>, http_client::IoFuture);

type ResponseFuture = Box<dyn Future<Output = Result<Response, HttpError>> + Send>;

impl<N: Network> WasiHttpHooks for EgressHooks<N> {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let policy = self.policy.clone();
        let plugin = self.plugin.clone();
        let net = self.net.clone();
        let counter = self.counter.clone();
        Box::new(async move {
            send(
                &policy,
                &plugin,
                &*net,
                counter.as_deref(),
                request,
                options,
            )
            .await
        })
    }
}

/// One plugin request: resolved once, every address checked, sent to the checked addresses,
/// the response capped at `max_response_bytes`.
async fn send<N: Network>(
    policy: &EgressPolicy,
    plugin: &str,
    net: &N,
    counter: Option<&dyn EgressCounter>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Response, HttpError> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let default_port = if tls { 443 } else { 80 };
    let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(default_port);
    let decision = policy.resolve(net, &host, port, default_port).await;
    if let Some(counter) = counter {
        let label = policy.host_label(&host, port, default_port);
        counter.count(plugin, label, EgressResult::of(&decision));
    }
    let targets = decision.map_err(|denied| {
        tracing::warn!(plugin, url = shown(&uri), %denied, "HTTP request denied");
        match denied {
            Denied::Unresolved(_) => HttpError::DnsError {
                rcode: Some("no address".into()),
                info_code: None,
            },
            Denied::DnsTimeout(..) => HttpError::DnsTimeout,
            _ => HttpError::HttpRequestDenied,
        }
    })?;
    let options = clamp(options, policy.timeout);
    let tls = match tls {
        false => None,
        true => Some(
            policy
                .trust
                .client_config()
                .ok_or(HttpError::ConfigurationError)?,
        ),
    };
    let (response, io) =
        http_client::send(net, request, &targets, &normalise(&host), tls, options).await?;
    let limit = policy.max_response_bytes;
    // A response that announces a body over the cap is refused before the plugin reads any of
    // it, with the error code the plugin can tell apart (a cap hit while streaming reaches the
    // guest only as a failed read).
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit as u64
    {
        tracing::warn!(
            plugin,
            url = shown(&uri),
            length,
            limit,
            "HTTP response body over max_response_bytes: refused"
        );
        return Err(HttpError::HttpResponseBodySize(Some(limit as u64)));
    }
    let response = response.map(|body| {
        Limited::new(body, limit)
            .map_err(move |e| match e.downcast::<HttpError>() {
                Ok(inner) => *inner,
                Err(_) => HttpError::HttpResponseBodySize(Some(limit as u64)),
            })
            .boxed_unsync()
    });
    Ok((response, io))
}

#[cfg(test)]
mod tests;
