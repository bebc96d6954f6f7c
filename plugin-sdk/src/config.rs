//! The plugin's `config` table from warren.toml, as given to [`Plugin::init`](crate::Plugin::init).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

/// A plugin's configuration: string keys to string values.
///
/// warren gives every value as a string; [`parse`](Config::parse) turns one
/// into a number, a bool or any other [`FromStr`] type.
///
/// ```
/// # use warren_plugin::Config;
/// let config = Config::from(vec![("to".to_string(), "out".to_string())]);
/// assert_eq!(config.get("to"), Some("out"));
/// assert_eq!(config.get_or("prefix", ">"), ">");
/// assert_eq!(config.parse::<u8>("priority"), Ok(None));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    /// The value of `key`, if it is set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The value of `key`, or `default` if it is not set.
    pub fn get_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    /// The value of `key`, or an error naming the key if it is not set.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("config key '{key}' is required"))
    }

    /// The value of `key` parsed as a `T`: `Ok(None)` if it is not set, an
    /// error naming the key and the value if it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value.parse().map(Some).map_err(|error| {
            format!(
                "config key '{key}': cannot parse '{value}' as {}: {error}",
                std::any::type_name::<T>()
            )
        })
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// Later pairs win over earlier ones with the same key.
impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Config {
        pairs.into_iter().collect()
    }
}

/// Later pairs win over earlier ones with the same key.
impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Config {
        Config {
            entries: pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        [("to", "out"), ("priority", "7"), ("bad", "300")]
            .into_iter()
            .collect()
    }

    #[test]
    fn get_and_get_or() {
        assert_eq!(config().get("to"), Some("out"));
        assert_eq!(config().get("nope"), None);
        assert_eq!(config().get_or("to", "x"), "out");
        assert_eq!(config().get_or("nope", "x"), "x");
    }

    #[test]
    fn require_names_the_missing_key() {
        assert_eq!(config().require("to"), Ok("out"));
        assert_eq!(
            config().require("nope"),
            Err("config key 'nope' is required".to_string())
        );
    }

    #[test]
    fn parse_reports_key_and_value() {
        assert_eq!(config().parse::<u8>("priority"), Ok(Some(7)));
        assert_eq!(config().parse::<u8>("nope"), Ok(None));
        let Err(error) = config().parse::<u8>("bad") else {
            panic!("300 parsed as a u8");
        };
        assert!(
            error.contains("'bad'") && error.contains("'300'") && error.contains("u8"),
            "{error}"
        );
    }

    #[test]
    fn later_pairs_win() {
        let config = Config::from(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(config.get("a"), Some("2"));
        assert_eq!(config.iter().count(), 1);
    }
}
