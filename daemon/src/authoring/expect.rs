//! Compares what a plugin did with what a case expects, and shows the difference as a diff.
//!
//! Both sides are made into JSON of the same shape: the expectation as written, and the
//! outcome *projected* onto it — each key the case gives, with the plugin's value, or the
//! expected one where it matches (a substring found, a JSON subset present). Equal documents
//! pass; otherwise their line diff shows exactly what differs, with context.

use serde_json::{Map, Value, json};

use super::cases::{Case, LogExpect, PublishExpect};

/// What the plugin did with a case's message: the outcome as `warren plugin run` reports
/// it (`verdict`, `publishes`), or the error that stopped it; and its log lines.
#[derive(Debug)]
pub struct Observed {
    /// `{"verdict": ..., "publishes": [...]}`, or why there is none.
    pub outcome: Result<Value, String>,
    /// The plugin's log lines, each `level: text`.
    pub logs: Vec<String>,
}

/// `None` if the case passed, else the diff (expected `-`, actual `+`).
pub fn compare(case: &Case, observed: &Observed) -> Option<String> {
    let (wanted, got) = documents(case, observed);
    if wanted == got {
        return None;
    }
    let wanted = pretty(&wanted);
    let got = pretty(&got);
    let diff = similar::TextDiff::from_lines(&wanted, &got);
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header("expected", "actual")
            .to_string(),
    )
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The expected document and the observed one projected onto it.
fn documents(case: &Case, observed: &Observed) -> (Value, Value) {
    let expect = &case.expect;
    let mut wanted = Map::new();
    let mut got = Map::new();
    match (&expect.error, &observed.outcome) {
        (Some(error), Err(actual)) => {
            wanted.insert("error".into(), json!(error));
            let shown = if actual.contains(error.as_str()) {
                error
            } else {
                actual
            };
            got.insert("error".into(), json!(shown));
        }
        (Some(error), Ok(outcome)) => {
            wanted.insert("error".into(), json!(error));
            got.insert("verdict".into(), outcome["verdict"].clone());
            got.insert("publishes".into(), outcome["publishes"].clone());
        }
        (None, outcome) => {
            expected_outcome(case, &mut wanted);
            match outcome {
                Ok(outcome) => observed_outcome(case, outcome, &mut got),
                Err(actual) => {
                    got.insert("error".into(), json!(actual));
                }
            }
        }
    }
    if let Some(logs) = &expect.logs {
        let lines: Vec<Value> = logs.iter().map(|l| json!(describe(l))).collect();
        wanted.insert("logs".into(), Value::Array(lines.clone()));
        let shown = if logs_match(logs, &observed.logs) {
            Value::Array(lines)
        } else {
            json!(observed.logs)
        };
        got.insert("logs".into(), shown);
    }
    (Value::Object(wanted), Value::Object(got))
}

fn expected_outcome(case: &Case, wanted: &mut Map<String, Value>) {
    let verdict = case.verdict().map(|v| v.as_str()).unwrap_or_default();
    wanted.insert("verdict".into(), json!(verdict));
    if let Some(republish) = &case.expect.republish {
        wanted.insert("republish".into(), expected_publish(republish));
    }
    let publishes = case.expect.publishes.iter().map(expected_publish);
    wanted.insert("publishes".into(), publishes.collect());
}

fn observed_outcome(case: &Case, outcome: &Value, got: &mut Map<String, Value>) {
    let verdict = &outcome["verdict"];
    let name = match verdict {
        Value::String(name) => name.as_str(),
        _ => "republish",
    };
    got.insert("verdict".into(), json!(name));
    if let Some(republish) = &case.expect.republish {
        let actual = &verdict["republish"];
        let shown = if actual.is_object() {
            project_publish(republish, actual, &actual["priority"])
        } else {
            Value::Null
        };
        got.insert("republish".into(), shown);
    }
    let actual = outcome["publishes"].as_array().cloned().unwrap_or_default();
    let expected = &case.expect.publishes;
    let shown = actual
        .iter()
        .enumerate()
        .map(|(i, publish)| match expected.get(i) {
            Some(wanted) => project_publish(wanted, publish, &publish["properties"]["priority"]),
            None => publish.clone(),
        });
    got.insert("publishes".into(), shown.collect());
}

/// An expected publish as JSON: the keys the case gives.
fn expected_publish(publish: &PublishExpect) -> Value {
    serde_json::to_value(publish).unwrap_or(Value::Null)
}

/// `actual` (as `warren plugin run` shows a publish or republish) reduced to the keys
/// `wanted` gives, each equal to the wanted value where it matches.
fn project_publish(wanted: &PublishExpect, actual: &Value, priority: &Value) -> Value {
    let mut out = Map::new();
    let body = actual
        .get("body")
        .cloned()
        .or_else(|| {
            actual
                .get("body_hex")
                .map(|hex| json!(format!("hex:{hex}")))
        })
        .unwrap_or(Value::Null);
    let text = body.as_str().unwrap_or_default();
    if wanted.exchange.is_some() {
        out.insert("exchange".into(), actual["exchange"].clone());
    }
    if wanted.routing_key.is_some() {
        out.insert("routing_key".into(), actual["routing_key"].clone());
    }
    if wanted.priority.is_some() {
        out.insert("priority".into(), priority.clone());
    }
    if wanted.body.is_some() {
        out.insert("body".into(), body.clone());
    }
    if let Some(part) = &wanted.body_contains {
        let shown = if text.contains(part.as_str()) {
            json!(part)
        } else {
            body.clone()
        };
        out.insert("body_contains".into(), shown);
    }
    if let Some(subset) = &wanted.body_json {
        let subset = json!(subset);
        let shown = match serde_json::from_str::<Value>(text) {
            Ok(parsed) => project(&subset, &parsed),
            Err(_) => body.clone(),
        };
        out.insert("body_json".into(), shown);
    }
    if let Some(headers) = &wanted.headers {
        let actual = match actual.get("headers") {
            Some(headers) => headers,
            None => &actual["properties"]["headers"],
        };
        out.insert("headers".into(), project(&json!(headers), actual));
    }
    if let Some(properties) = &wanted.properties {
        out.insert(
            "properties".into(),
            project(&json!(properties), &actual["properties"]),
        );
    }
    Value::Object(out)
}

/// `actual` reduced to the shape of `wanted`: an object keeps only the keys `wanted` has
/// (a key it lacks stays absent), arrays of the same length go element by element, and
/// any other value equal to the wanted one is the wanted one.
fn project(wanted: &Value, actual: &Value) -> Value {
    match (wanted, actual) {
        (Value::Object(wanted), Value::Object(actual)) => Value::Object(
            wanted
                .iter()
                .filter_map(|(key, w)| Some((key.clone(), project(w, actual.get(key)?))))
                .collect(),
        ),
        (Value::Array(wanted), Value::Array(actual)) if wanted.len() == actual.len() => wanted
            .iter()
            .zip(actual)
            .map(|(w, a)| project(w, a))
            .collect(),
        (Value::Number(w), Value::Number(a)) if w.as_f64() == a.as_f64() => wanted.clone(),
        _ => actual.clone(),
    }
}

fn describe(log: &LogExpect) -> String {
    match log {
        LogExpect::Contains(text) => text.clone(),
        LogExpect::Line { level, contains } => format!("{level}: {contains}"),
    }
}

/// True if every expected line is found, in order, among `lines` (others may come between).
fn logs_match(wanted: &[LogExpect], lines: &[String]) -> bool {
    let mut lines = lines.iter();
    wanted.iter().all(|log| {
        lines.any(|line| match log {
            LogExpect::Contains(text) => message_of(line).contains(text.as_str()),
            LogExpect::Line { level, contains } => line
                .strip_prefix(level.as_str())
                .and_then(|rest| rest.strip_prefix(": "))
                .is_some_and(|text| text.contains(contains.as_str())),
        })
    })
}

/// The text of a `level: text` line.
fn message_of(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authoring::cases::CasesFile;

    fn case(expect: &str) -> Case {
        let file: CasesFile =
            toml::from_str(&format!("[[case]]\nname = 'c'\n[case.expect]\n{expect}"))
                .expect("valid case");
        file.cases.into_iter().next().expect("one case")
    }

    fn observed(outcome: Value, logs: &[&str]) -> Observed {
        Observed {
            outcome: Ok(outcome),
            logs: logs.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn reply(body: &str) -> Value {
        json!({
            "verdict": "ack",
            "publishes": [{
                "exchange": "", "routing_key": "replies", "body": body,
                "properties": { "correlation_id": "42", "headers": { "n": 1 } },
            }],
        })
    }

    #[test]
    fn matching_outcomes_pass() {
        let case = case(
            r#"verdict = "ack"
            publishes = [{ routing_key = "replies", body_json = { status = 200 },
                           properties = { correlation_id = "42" }, headers = { n = 1 } }]
            logs = ["sent", { level = "info", contains = "done" }]"#,
        );
        let seen = observed(
            reply(r#"{"status": 200, "body": "x"}"#),
            &["debug: sent it", "warn: odd", "info: done"],
        );
        assert_eq!(compare(&case, &seen), None);
    }

    #[test]
    fn a_difference_is_shown_as_a_diff() {
        let case = case(
            r#"verdict = "ack"
            publishes = [{ routing_key = "replies", body_json = { status = 200 } }]"#,
        );
        let diff = compare(&case, &observed(reply(r#"{"status": 404}"#), &[]))
            .expect("a 404 is not a 200");
        assert!(diff.contains("-        \"status\": 200"), "{diff}");
        assert!(diff.contains("+        \"status\": 404"), "{diff}");
        assert!(!diff.contains("routing_key\": \"replies\"\n+"), "{diff}");
    }

    #[test]
    fn missing_and_extra_publishes_fail() {
        let none = case(r#"verdict = "ack""#);
        let diff = compare(&none, &observed(reply("{}"), &[])).expect("an extra publish");
        assert!(
            diff.contains("+      \"routing_key\": \"replies\""),
            "{diff}"
        );
        let two = case(
            r#"verdict = "ack"
            publishes = [{ routing_key = "replies" }, { routing_key = "audit" }]"#,
        );
        assert!(compare(&two, &observed(reply("{}"), &[])).is_some());
    }

    #[test]
    fn verdicts_errors_and_logs() {
        let republish = case(r#"republish = { routing_key = "out", priority = 7 }"#);
        let routed = json!({
            "verdict": { "republish": { "exchange": "", "routing_key": "out", "priority": 7 } },
            "publishes": [],
        });
        assert_eq!(compare(&republish, &observed(routed.clone(), &[])), None);
        let ack = case(r#"verdict = "ack""#);
        assert!(compare(&ack, &observed(routed, &[])).is_some());

        let refused = case(r#"error = "unknown config key""#);
        let failed = Observed {
            outcome: Err("init refused the configuration: unknown config key 'x'".into()),
            logs: vec![],
        };
        assert_eq!(compare(&refused, &failed), None);
        assert!(compare(&ack, &failed).is_some());

        let logged = case(
            r#"verdict = "ack"
            logs = [{ level = "warn", contains = "odd" }, "done"]"#,
        );
        let ack_out = json!({ "verdict": "ack", "publishes": [] });
        assert!(
            compare(
                &logged,
                &observed(ack_out.clone(), &["info: done", "warn: odd"])
            )
            .is_some()
        );
        assert!(compare(&logged, &observed(ack_out, &["info: odd", "info: done"])).is_some());
    }
}
