//! Secrets in the config: `${NAME}` taken from the environment, the broker URL (also from a
//! file), whose password never reaches a log or an error.

use std::fmt;

/// An AMQP URL whose password never reaches a log or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Parses and checks the scheme; the error does not quote the URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        match parsed.scheme() {
            "amqp" | "amqps" => {}
            other => {
                return Err(format!(
                    "scheme must be amqp:// or amqps://, not {other}://"
                ));
            }
        }
        // The AMQP client reads the host as a name: an IPv6 address would silently become
        // `localhost`.
        if let Some(url::Host::Ipv6(_)) = parsed.host() {
            return Err(
                "an IPv6 address as the host is not supported (the AMQP client would connect to \
                 localhost instead): use a host name that resolves to it"
                    .to_owned(),
            );
        }
        for (key, value) in parsed.query_pairs() {
            check_parameter(&key, &value)?;
        }
        Ok(Self(raw.to_owned()))
    }

    /// The full URL, for the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Checks one `?key=value` of a broker URL against what the AMQP client reads (anything else
/// would be ignored, or fail every connect as if the broker were down). The value of an
/// unknown key is not quoted: it may be a secret.
fn check_parameter(key: &str, value: &str) -> Result<(), String> {
    let fits = match key {
        "heartbeat" | "channel_max" => value.parse::<u16>().is_ok(),
        "frame_max" => value.parse::<u32>().is_ok(),
        "connection_timeout" => value.parse::<u64>().is_ok_and(|ms| ms > 0),
        "auth_mechanism" => [
            "plain",
            "amqplain",
            "external",
            "anonymous",
            "rabbit-cr-demo",
        ]
        .contains(&value.to_ascii_lowercase().as_str()),
        "cacertfile" | "certfile" | "keyfile" | "verify" | "server_name_indication" => {
            return Err(format!(
                "URL parameter `{key}` is not read here: TLS files and names go in [broker.tls] \
                 (ca_file, cert_file, key_file, server_name)"
            ));
        }
        _ => {
            return Err(format!(
                "unknown URL parameter `{key}` (known: heartbeat, connection_timeout, frame_max, \
                 channel_max, auth_mechanism)"
            ));
        }
    };
    if fits {
        return Ok(());
    }
    let expected = match key {
        "heartbeat" => "seconds, 0 to 65535 (0: no heartbeats)",
        "channel_max" => "a number, 0 to 65535",
        "frame_max" => "bytes, 0 to 4294967295",
        "connection_timeout" => "milliseconds, more than 0",
        _ => "PLAIN, AMQPLAIN, EXTERNAL, ANONYMOUS or RABBIT-CR-DEMO",
    };
    Err(format!(
        "URL parameter {key}={value:?}: expected {expected}"
    ))
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

/// A TOML error as it may be shown: passwords hidden; and if it stands in a `secret_config`
/// (its line, or the table it is in, names one), neither the line it quotes nor the values:
/// the line number and the bare message, quoted text replaced by `***`.
pub(super) fn shown_toml_error(error: &toml::de::Error, text: &str) -> String {
    let full = hide_passwords(error.to_string().trim_end());
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return full;
    };
    let rest = &text[before.len()..];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = format!(
        "{}{}",
        &before[line_start..],
        rest.lines().next().unwrap_or("")
    );
    let table = before
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['));
    if !line.contains("secret_config") && !table.is_some_and(|t| t.contains("secret_config")) {
        return full;
    }
    format!(
        "TOML parse error at line {}, in a secret_config (its text is not shown): {}",
        before.matches('\n').count() + 1,
        hide_quoted(error.message())
    )
}

/// `message` with whatever stands between double quotes or backticks replaced by `***`.
fn hide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push_str("***");
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push_str("***");
    }
    out
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// Replaces every `${NAME}` in the string values of `value` by the environment variable
/// `NAME` (`$${` stands for a literal `${`). `key` is where `value` sits in the file, for
/// errors: an unset variable names both the variable and the key.
pub(super) fn interpolate(value: &mut toml::Value, key: &str, problems: &mut Vec<String>) {
    match value {
        toml::Value::String(text) => match expand(text, &|name| std::env::var(name).ok()) {
            Ok(expanded) => *text = expanded,
            Err(problem) => problems.push(format!("{key}: {problem}")),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{key}[{i}]"), problems);
            }
        }
        toml::Value::Table(table) => {
            for (name, item) in table.iter_mut() {
                let key = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                interpolate(item, &key, problems);
            }
        }
        _ => {}
    }
}

/// `text` with each `${NAME}` replaced by `lookup(NAME)`, and `$${` by `${`.
fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${`: a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "an unclosed ${ (write $${ for a literal ${)".to_owned())?;
        let name = &after[..end];
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "${{{name}}} is not an environment variable name (letters, digits, _)"
            ));
        }
        let value = lookup(name).ok_or_else(|| {
            format!("environment variable {name} is not set (write $${{ for a literal ${{)")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// A TOML error inside a `secret_config` does not quote the secret value.
    #[test]
    fn toml_errors_in_secret_config_do_not_quote_it() {
        for text in [
            "[plugins.p]\npath = \"p.wasm\"\nsecret_config = \"tok-123\"\n",
            "[plugins.p]\npath = \"p.wasm\"\n[plugins.p.secret_config]\ntoken = \"tok-123\n",
            "[plugins.p]\npath = \"p.wasm\"\nsecret_config = { token = \"tok-123\" \n",
        ] {
            let error = toml::from_str::<super::super::raw::RawConfig>(text).expect_err("bad");
            let shown = super::shown_toml_error(&error, text);
            assert!(!shown.contains("tok-123"), "{shown}");
            assert!(shown.contains("secret_config"), "{shown}");
        }
        let text = "[plugins.p]\npath = 3\n";
        let error = toml::from_str::<super::super::raw::RawConfig>(text).expect_err("bad");
        assert!(
            super::shown_toml_error(&error, text).contains("path = 3"),
            "others keep their line"
        );
    }

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_PW" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_replaced_and_escapes_kept() {
        assert_eq!(
            expand("amqp://u:${USER_PW}@h/%2f", &env).as_deref(),
            Ok("amqp://u:s3cret@h/%2f")
        );
        assert_eq!(expand("a${EMPTY}b", &env).as_deref(), Ok("ab"));
        assert_eq!(
            expand("cost $${USER_PW}", &env).as_deref(),
            Ok("cost ${USER_PW}")
        );
        assert_eq!(
            expand("no vars $ here", &env).as_deref(),
            Ok("no vars $ here")
        );
    }

    #[test]
    fn unset_bad_and_unclosed_are_errors() {
        let err = expand("x${NOPE}", &env).expect_err("unset");
        assert!(err.contains("NOPE is not set"), "{err}");
        assert!(expand("x${a-b}", &env).is_err());
        assert!(expand("x${OPEN", &env).is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let mut value: toml::Value =
            toml::from_str("[plugins.p]\nconfig = { token = \"${WARREN_TEST_SURELY_UNSET}\" }\n")
                .expect("toml");
        let mut problems = Vec::new();
        interpolate(&mut value, "", &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with(
                "plugins.p.config.token: environment variable WARREN_TEST_SURELY_UNSET is not set"
            ),
            "{problems:?}"
        );
    }
}
