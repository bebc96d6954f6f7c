//! Turns a message body into the HTTP request it describes, or a reason why
//! it describes none.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

/// The body's JSON, as written by the producer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    /// Default `GET`.
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_base64: Option<String>,
}

/// `http` or `https`: the only schemes the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// One HTTP request, checked and split the way `wasi:http` wants it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Upper-case, for example `GET`.
    pub method: String,
    /// The URL's scheme.
    pub scheme: Scheme,
    /// `host` or `host:port`.
    pub authority: String,
    /// Starts with `/`; no fragment.
    pub path_with_query: String,
    /// Names and values as given (a `content-length` is added for a body if
    /// none is given).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Empty when the request has no body.
    pub body: Vec<u8>,
}

/// Parses a message body: `{"method", "url", "headers", "body" | "body_base64"}`.
pub fn parse(body: &[u8]) -> Result<Request, String> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|error| format!("body is not a request: {error}"))?;
    let (scheme, authority, path_with_query) = split_url(&raw.url)?;
    let body = match (raw.body, raw.body_base64) {
        (Some(_), Some(_)) => return Err("give 'body' or 'body_base64', not both".into()),
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => BASE64
            .decode(encoded)
            .map_err(|error| format!("'body_base64' is not base64: {error}"))?,
        (None, None) => Vec::new(),
    };
    let mut headers: Vec<(String, Vec<u8>)> = raw
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let has_length = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    if !body.is_empty() && !has_length {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    Ok(Request {
        method: method(raw.method.as_deref().unwrap_or("GET"))?,
        scheme,
        authority,
        path_with_query,
        headers,
        body,
    })
}

/// The method upper-cased, if it is an HTTP token.
fn method(method: &str) -> Result<String, String> {
    let is_token = !method.is_empty()
        && method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if is_token {
        Ok(method.to_ascii_uppercase())
    } else {
        Err(format!("'{method}' is not an HTTP method"))
    }
}

/// Splits `scheme://authority/path?query#fragment` into scheme, authority and
/// path-with-query (`/` if empty; the fragment is dropped).
fn split_url(url: &str) -> Result<(Scheme, String, String), String> {
    if !url.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "url '{url}' has spaces, control or non-ASCII characters (percent-encode them)"
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "url '{url}' is not absolute (http://… or https://…)"
        ));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(format!("url '{url}': unsupported scheme '{scheme}'")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("url '{url}' has no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "url '{url}': credentials in the url are not supported (use an authorization header)"
        ));
    }
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let path_with_query = match tail.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{tail}"),
        Some(_) => tail.to_owned(),
    };
    Ok((scheme, authority.to_owned(), path_with_query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Request {
        match parse(json.as_bytes()) {
            Ok(request) => request,
            Err(error) => panic!("{json}: {error}"),
        }
    }

    fn refused(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(request) => panic!("{json} was accepted: {request:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn a_bare_url_is_a_get() {
        assert_eq!(
            parsed(r#"{"url": "http://127.0.0.1:8080"}"#),
            Request {
                method: "GET".into(),
                scheme: Scheme::Http,
                authority: "127.0.0.1:8080".into(),
                path_with_query: "/".into(),
                headers: vec![],
                body: vec![],
            }
        );
    }

    #[test]
    fn every_field() {
        let request = parsed(
            r#"{"method": "post", "url": "HTTPS://example.com/a/b?q=1&r#frag",
                "headers": {"x-a": "1"}, "body": "hé"}"#,
        );
        assert_eq!(request.method, "POST");
        assert_eq!(request.scheme, Scheme::Https);
        assert_eq!(request.authority, "example.com");
        assert_eq!(request.path_with_query, "/a/b?q=1&r");
        assert_eq!(
            request.headers,
            vec![
                ("x-a".to_string(), b"1".to_vec()),
                ("content-length".to_string(), b"3".to_vec()),
            ]
        );
        assert_eq!(request.body, "hé".as_bytes());
    }

    #[test]
    fn query_without_path_and_base64_body() {
        let request = parsed(
            r#"{"url": "http://h?x=1", "body_base64": "AP8=", "headers": {"Content-Length": "2"}}"#,
        );
        assert_eq!(request.path_with_query, "/?x=1");
        assert_eq!(request.body, [0x00, 0xff]);
        assert_eq!(
            request.headers.len(),
            1,
            "the given content-length is kept alone"
        );
    }

    #[test]
    fn refusals_say_why() {
        for (json, why) in [
            ("not json", "not a request"),
            (r#"{"method": "GET"}"#, "url"),
            (r#"{"url": 7}"#, "expected a string"),
            (r#"{"url": "ftp://h/"}"#, "unsupported scheme 'ftp'"),
            (r#"{"url": "h/path"}"#, "not absolute"),
            (r#"{"url": "http:///path"}"#, "no host"),
            (r#"{"url": "http://u:p@h/"}"#, "credentials"),
            (r#"{"url": "http://h/a b"}"#, "spaces"),
            (r#"{"url": "http://h/", "method": "GE T"}"#, "HTTP method"),
            (r#"{"url": "http://h/", "body_base64": "!!"}"#, "base64"),
            (
                r#"{"url": "http://h/", "body": "a", "body_base64": "YQ=="}"#,
                "not both",
            ),
            (r#"{"url": "http://h/", "header": {}}"#, "unknown field"),
            (
                r#"{"url": "http://h/", "headers": {"a": 1}}"#,
                "not a request",
            ),
        ] {
            let error = refused(json);
            assert!(error.contains(why), "{json}: {error}");
        }
    }
}
