//! Unit tests of config parsing and validation.

use super::secret::hide_passwords;
use super::*;

fn parse(text: &str) -> anyhow::Result<Config> {
    Config::parse(text, Path::new("/nonexistent/warren.toml"))
}

fn error_of(text: &str) -> String {
    format!("{:#}", parse(text).expect_err("config should be refused"))
}

const QUEUE_AND_PIPELINE: &str = r#"
[[queues]]
name = "q"
[[pipelines]]
name = "p"
queue = "q"
plugin = "missing"
"#;

#[test]
fn unknown_key_names_key_line_and_file() {
    let err = error_of("[broker]\nurl = \"amqp://localhost\"\nprefetchx = 3\n");
    assert!(err.contains("/nonexistent/warren.toml"), "{err}");
    assert!(err.contains("prefetchx"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn wrong_type_is_refused() {
    let err = error_of("[[queues]]\nname = \"q\"\ndurable = \"yes\"\n");
    assert!(err.contains("durable") || err.contains("line 3"), "{err}");
}

#[test]
fn missing_plugin_and_plugin_file_are_named() {
    let err = error_of(QUEUE_AND_PIPELINE);
    assert!(err.contains("pipelines[0].plugin"), "{err}");
    let err = error_of("[plugins.x]\npath = \"x.wasm\"\n");
    assert!(err.contains("plugins.x.path"), "{err}");
    assert!(err.contains("/nonexistent/x.wasm"), "{err}");
}

#[test]
fn zero_prefetch_and_bad_on_error_are_refused() {
    let text = QUEUE_AND_PIPELINE.replace(
        "plugin = \"missing\"",
        "plugin = \"missing\"\nprefetch = 0\non_error = \"drop\"",
    );
    let err = error_of(&text);
    // A value that is not a policy is refused by the parser, naming the key and line.
    assert!(err.contains("on_error") && err.contains("line"), "{err}");
    assert!(
        err.contains("`reject`") && err.contains("`requeue`"),
        "{err}"
    );
    let err = error_of(&text.replace("on_error = \"drop\"", ""));
    assert!(err.contains("pipelines[0].prefetch"), "{err}");
}

#[test]
fn password_never_shown() {
    let url = BrokerUrl::parse("amqp://user:s3cret@host:5672/%2f").expect("valid");
    assert!(!url.to_string().contains("s3cret"));
    assert!(!format!("{url:?}").contains("s3cret"));
    let err = error_of("[broker]\nurl = \"http://user:s3cret@host\"\n");
    assert!(err.contains("broker.url"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // TOML's own errors quote the line: a URL where a list belongs, a stray key.
    for text in [
        "[broker]\nurls = \"amqp://user:s3cret@host/%2f\"\n",
        "[broker]\nurl = \"amqp://user:s3cret@host/%2f\"\nurl2 = 1\n",
        "[broker]\nurl = amqp://user:s3cret@host\n",
    ] {
        let err = error_of(text);
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[test]
fn passwords_are_hidden_in_any_text() {
    assert_eq!(
        hide_passwords("bad: \"amqp://u:p@h:5672/%2f\" and amqps://x:y@z, amqp://h/v"),
        "bad: \"amqp://u:***@h:5672/%2f\" and amqps://x:***@z, amqp://h/v"
    );
    assert_eq!(hide_passwords("no url here"), "no url here");
}

#[test]
fn max_instances_of_zero_is_refused_naming_the_key() {
    let err = error_of("[plugins.p]\npath = \"p.wasm\"\nmax_instances = 0\n");
    assert!(
        err.contains("plugins.p.max_instances: must be at least 1"),
        "{err}"
    );
}

#[test]
fn queue_arguments_collected() {
    let config = parse(
        r#"
[[queues]]
name = "q"
max_priority = 10
dead_letter_exchange = "dlx"
arguments = { "x-queue-type" = "quorum" }
"#,
    )
    .expect("valid");
    let args = &config.queues[0].arguments;
    assert_eq!(args.get("x-max-priority"), Some(&ArgValue::Int(10)));
    assert_eq!(
        args.get("x-dead-letter-exchange"),
        Some(&ArgValue::Text("dlx".into()))
    );
    assert_eq!(
        args.get("x-queue-type"),
        Some(&ArgValue::Text("quorum".into()))
    );
    assert!(config.queues[0].durable);
}

#[test]
fn derived_queues_take_the_source_queue_type() {
    let text = r#"
[[queues]]
name = "q"
arguments = { "x-queue-type" = "quorum" }
[[queues]]
name = "c"
[[queues]]
name = "d"
dead_letter_exchange = "dlx"
[[pipelines]]
name = "p"
queue = "q"
plugin = "x"
retry_delay_ms = 100
[[pipelines]]
name = "pc"
queue = "c"
plugin = "x"
dead_letter_queue = false
[[pipelines]]
name = "pd"
queue = "d"
plugin = "x"
[plugins.x]
path = "x.wasm"
"#;
    let mut problems = Vec::new();
    let raw: super::raw::RawConfig = toml::from_str(text).expect("toml");
    let config = super::validate::config(
        raw,
        Path::new("/w/warren.toml"),
        Path::new("/w"),
        &mut problems,
    );
    assert_eq!(
        problems.len(),
        1,
        "only the missing plugin file: {problems:?}"
    );
    let queue = |name: &str| {
        config
            .queues
            .iter()
            .find(|q| q.name == name)
            .unwrap_or_else(|| panic!("{name} declared"))
    };
    let retry = queue("q.warren-retry.100ms");
    assert!(retry.is_quorum());
    assert_eq!(
        retry.arguments.get("x-dead-letter-strategy"),
        Some(&ArgValue::Text("at-least-once".into()))
    );
    assert_eq!(
        retry.arguments.get("x-overflow"),
        Some(&ArgValue::Text("reject-publish".into()))
    );
    assert!(queue("q.dead").is_quorum() && queue("q.dead").durable);
    let by_name = |name: &str| {
        config
            .pipelines
            .iter()
            .find(|p| p.name == name)
            .expect("pipeline")
    };
    assert!(by_name("p").quorum);
    assert_eq!(by_name("p").dead_letter, DeadLetter::Queue("q.dead".into()));
    assert_eq!(by_name("pc").dead_letter, DeadLetter::Drop);
    assert_eq!(by_name("pd").dead_letter, DeadLetter::Broker);
    assert!(
        !config
            .queues
            .iter()
            .any(|q| q.name == "c.dead" || q.name == "d.dead")
    );
}

#[test]
fn names_too_long_for_amqp_are_refused() {
    let long = "q".repeat(QUEUE_NAME_MAX + 1);
    let err = error_of(&format!("[[queues]]\nname = \"{long}\"\n"));
    assert!(
        err.contains("queues[0].name: 220 bytes long; at most 219"),
        "{err}"
    );
    let err = error_of(&format!("[[exchanges]]\nname = \"{}\"\n", "e".repeat(256)));
    assert!(err.contains("exchanges[0].name: 256 bytes long"), "{err}");
}

#[test]
fn the_default_connection_name_carries_the_host_name() {
    let config = parse("").expect("an empty config is valid");
    assert_eq!(
        config.broker.connection_name,
        format!("warren@{}", hostname())
    );
    assert_ne!(hostname(), "", "a host name, or `unknown`");
    assert_eq!(
        config.broker.startup_timeout,
        std::time::Duration::from_millis(DEFAULT_STARTUP_TIMEOUT_MS)
    );
}

#[test]
fn cache_dir_is_a_directory_relative_to_the_config_or_false() {
    let cache = |text: &str| parse(text).expect("valid config").cache;
    assert_eq!(cache(""), CacheSetting::Default);
    assert_eq!(cache("cache_dir = false"), CacheSetting::Off);
    assert_eq!(
        cache("cache_dir = \"cache\""),
        CacheSetting::Dir("/nonexistent/cache".into())
    );
    assert_eq!(
        cache("cache_dir = \"/var/cache/warren\""),
        CacheSetting::Dir("/var/cache/warren".into())
    );
}

#[test]
fn a_cache_dir_of_another_kind_is_refused_naming_the_key() {
    for bad in [
        "cache_dir = true",
        "cache_dir = \"\"",
        "cache_dir = 3",
        "cache_dir = [\"a\"]",
    ] {
        let err = error_of(bad);
        assert!(err.contains("cache_dir: "), "{bad}: {err}");
        assert!(
            err.contains("false to turn the compile cache off"),
            "{bad}: {err}"
        );
        assert!(err.contains("/nonexistent/warren.toml"), "{bad}: {err}");
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// A value of any TOML type, good or bad for whatever key it lands on.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("0".to_owned()),
            Just("-1".to_owned()),
            Just("99999999999999999".to_owned()),
            Just("true".to_owned()),
            Just("1.5".to_owned()),
            Just("\"\"".to_owned()),
            Just("\"reject\"".to_owned()),
            Just("\"requeue\"".to_owned()),
            Just("\"q\"".to_owned()),
            Just("\"${WARREN_FUZZ_UNSET}\"".to_owned()),
            Just("\"amqp://u:p@h/%2f\"".to_owned()),
            Just("[\"a:b\", \"example.com:443\"]".to_owned()),
            Just("{ k = \"v\" }".to_owned()),
            "\"[a-z.:/*]{0,12}\"".prop_map(|s| s),
        ]
    }

    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "name",
            "queue",
            "plugin",
            "prefetch",
            "concurrency",
            "on_error",
            "max_deliveries",
            "retry_delay_ms",
            "dead_letter_queue",
            "path",
            "timeout_ms",
            "memory_mb",
            "allowed_hosts",
            "allowed_queues",
            "max_priority",
            "durable",
            "arguments",
            "type",
            "listen",
            "token",
            "url",
            "urls",
            "startup_timeout_ms",
            "bogus",
        ])
    }

    fn section() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "[broker]",
            "[admin]",
            "[plugins.p]",
            "[[queues]]",
            "[[exchanges]]",
            "[[bindings]]",
            "[[pipelines]]",
        ])
    }

    proptest! {
        /// Whatever the file says, parsing never panics, and a refusal names the file and says
        /// where: a line (a TOML error) or a key (a validation error).
        #[test]
        fn any_config_is_parsed_or_refused_naming_where(
            sections in proptest::collection::vec(
                (section(), proptest::collection::vec((key(), value()), 0..4)),
                0..6,
            )
        ) {
            let mut text = String::new();
            for (section, entries) in &sections {
                text.push_str(section);
                text.push('\n');
                let mut seen = std::collections::BTreeSet::new();
                for (key, value) in entries {
                    if seen.insert(*key) {
                        text.push_str(&format!("{key} = {value}\n"));
                    }
                }
            }
            if let Err(e) = Config::parse(&text, Path::new("/nonexistent/warren.toml")) {
                let e = format!("{e:#}");
                prop_assert!(e.contains("/nonexistent/warren.toml"), "{}", e);
                let keyed = e.lines().skip(1).all(|l| l.trim_start().split(':').next().is_some_and(|k| !k.contains(' ')));
                prop_assert!(e.contains("line") || keyed, "{}", e);
            }
        }
    }
}

#[test]
fn broker_url_parameters_are_checked_naming_the_url() {
    for (parameter, needle) in [
        ("heartbeat=abc", "heartbeat=\"abc\""),
        ("connection_timeout=0", "connection_timeout"),
        ("frame_max=-1", "frame_max"),
        ("auth_mechanism=kerberos", "auth_mechanism"),
        ("hearbeat=10", "unknown URL parameter `hearbeat`"),
        ("cacertfile=/etc/ca.pem", "[broker.tls]"),
    ] {
        let text = format!(
            "[broker]\nurls = [\"amqp://localhost/%2f\", \"amqp://u:s3cret@h/%2f?{parameter}\"]\n"
        );
        let err = error_of(&text);
        assert!(err.contains("broker.urls[1]"), "{parameter}: {err}");
        assert!(err.contains(needle), "{parameter}: {err}");
        assert!(!err.contains("s3cret"), "{parameter}: {err}");
    }
    let err = error_of("[broker]\nurl = \"amqp://[fd00::5]:5672/%2f\"\n");
    assert!(err.contains("broker.url") && err.contains("IPv6"), "{err}");
    let fine = "amqps://h/%2f?heartbeat=10&connection_timeout=2000&frame_max=131072&channel_max=64&auth_mechanism=EXTERNAL";
    BrokerUrl::parse(fine).expect("every parameter the client reads");
}
