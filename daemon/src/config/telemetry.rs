//! `[telemetry]`: where message traces are exported (OTLP over HTTP), if anywhere.

use serde::Deserialize;

use super::validate::Problems;

/// The `service.name` of the exported spans when `[telemetry] service_name` is not given.
pub const DEFAULT_SERVICE_NAME: &str = "warren";

/// The path under `otlp_endpoint` that takes trace exports (OTLP/HTTP's own).
pub const TRACES_PATH: &str = "/v1/traces";

/// `[telemetry]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    /// The base URL of an OTLP/HTTP receiver (an OpenTelemetry Collector, Jaeger, Tempo...),
    /// e.g. `http://127.0.0.1:4318`; spans go to `<url>/v1/traces`. Default: none, and then
    /// no message is traced.
    pub(super) otlp_endpoint: Option<String>,
    /// `service.name` of the spans. Default [`DEFAULT_SERVICE_NAME`].
    pub(super) service_name: Option<String>,
}

/// Where message traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The URL spans are posted to: the configured endpoint with [`TRACES_PATH`].
    pub endpoint: url::Url,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// Validates `[telemetry]`: `None` (no traces) without an `otlp_endpoint`.
pub(super) fn telemetry(raw: RawTelemetry, problems: &mut Problems) -> Option<TelemetrySettings> {
    const FIX: &str = "give the http:// address of an OTLP/HTTP receiver, e.g. \
                       \"http://127.0.0.1:4318\" (an OpenTelemetry Collector's default), or leave \
                       otlp_endpoint out for no traces";
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    if service_name.trim().is_empty() {
        problems.push(
            "telemetry.service_name: empty; give a name, or leave it out for \"warren\"".into(),
        );
    }
    let text = raw.otlp_endpoint?;
    let url = match url::Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            problems.push(format!(
                "telemetry.otlp_endpoint: {text:?} is not a URL ({e}); {FIX}"
            ));
            return None;
        }
    };
    if url.scheme() != "http" || url.host().is_none() {
        problems.push(format!(
            "telemetry.otlp_endpoint: {text:?}: warren exports over plain http:// to a host; {FIX} \
             (for TLS, run a local collector that forwards over https)"
        ));
        return None;
    }
    Some(TelemetrySettings {
        endpoint: traces_url(url),
        service_name,
    })
}

/// `url` with [`TRACES_PATH`] appended, unless it ends with it already.
fn traces_url(mut url: url::Url) -> url::Url {
    let path = url.path().trim_end_matches('/');
    if !path.ends_with(TRACES_PATH) {
        let joined = format!("{path}{TRACES_PATH}");
        url.set_path(&joined);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(endpoint: &str) -> Result<TelemetrySettings, String> {
        let mut problems = Problems::new();
        let raw = RawTelemetry {
            otlp_endpoint: Some(endpoint.to_owned()),
            service_name: None,
        };
        telemetry(raw, &mut problems).ok_or_else(|| problems.join("\n"))
    }

    #[test]
    fn the_traces_path_is_added_once() {
        for (given, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("http://collector/otlp", "http://collector/otlp/v1/traces"),
            (
                "http://collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
            ),
        ] {
            let settings = validated(given).expect("valid");
            assert_eq!(settings.endpoint.as_str(), url, "{given}");
            assert_eq!(settings.service_name, "warren");
        }
    }

    #[test]
    fn a_bad_endpoint_names_the_key_and_the_fix() {
        for bad in [
            "127.0.0.1:4318",
            "https://collector:4318",
            "grpc://x",
            "not a url",
        ] {
            let error = validated(bad).expect_err(bad);
            assert!(
                error.starts_with("telemetry.otlp_endpoint: ")
                    && error.contains("http://127.0.0.1:4318"),
                "{error}"
            );
        }
    }

    #[test]
    fn without_an_endpoint_nothing_is_traced() {
        let mut problems = Problems::new();
        let raw = RawTelemetry {
            otlp_endpoint: None,
            service_name: Some("orders".into()),
        };
        assert_eq!(telemetry(raw, &mut problems), None);
        assert!(problems.is_empty());
    }
}
