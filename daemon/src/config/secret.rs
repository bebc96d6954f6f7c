//! Secrets in the config: the broker URL, whose password never reaches a log or an error.

use std::fmt;

/// An AMQP URL whose password never reaches a log or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Parses and checks the scheme; the error does not quote the URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        match parsed.scheme() {
            "amqp" | "amqps" => Ok(Self(raw.to_owned())),
            other => Err(format!(
                "scheme must be amqp:// or amqps://, not {other}://"
            )),
        }
    }

    /// The full URL, for the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // Cannot fail: the URL has a password, so it has a host.
                    let _ = url.set_password(Some("***"));
                }
                f.write_str(url.as_str())
            }
            Err(_) => f.write_str("<invalid url>"),
        }
    }
}

/// `text` with the password of every `scheme://user:password@` in it replaced by `***`.
pub(super) fn hide_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first character a URL's user info cannot hold.
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '/' | '`'))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@').map(|at| &authority[..at]) {
            Some(user_info) if user_info.contains(':') => {
                let user = &user_info[..user_info.find(':').unwrap_or(0)];
                out.push_str(user);
                out.push_str(":***");
                out.push_str(&authority[user_info.len()..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}
