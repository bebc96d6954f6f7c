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
