//! Writing plugins: `warren plugin test` on the shipped plugins and the example routers with
//! their cases files, its diff for a failed case, `warren plugin new` → build → test in each
//! language, and the Python and JavaScript helper modules in their own test runners.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use lapin::BasicProperties;

use crate::support::{
    Broker, TestConfig, example_plugin, repo_root, rust_example_plugin, shipped_plugin, start,
    unique,
};

/// Runs `warren` with `args` in `dir`.
fn warren(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run warren")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `warren plugin test WASM CASES` run in `dir`.
pub(crate) fn plugin_test(dir: &Path, wasm: &Path, cases: &Path) -> Output {
    let wasm = wasm.to_str().expect("utf-8");
    warren(
        dir,
        &["plugin", "test", wasm, cases.to_str().expect("utf-8")],
    )
}

/// `warren plugin test WASM CASES` passes: exit 0, every case ok, the count line.
fn passes(wasm: &Path, cases: &Path, count: usize) {
    let out = plugin_test(&repo_root(), wasm, cases);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(&format!("\n{count} passed, 0 failed\n")),
        "{report}"
    );
}

/// The shipped plugins pass the cases in their folders.
#[test]
fn shipped_plugins_pass_their_cases() {
    let root = repo_root();
    for (plugin, folder, count) in [
        ("printer", "printer", 2),
        ("sleeper", "sleeper", 5),
        ("http_executor", "http-executor", 6),
    ] {
        let cases = root.join("plugins").join(folder).join("CASES.toml");
        passes(&shipped_plugin(plugin), &cases, count);
    }
}

/// The three example routers pass the same cases: they are the same plugin.
#[test]
fn example_routers_pass_their_cases() {
    let cases = repo_root().join("plugins/examples/CASES.toml");
    passes(&rust_example_plugin("rust_router"), &cases, 7);
    passes(&example_plugin("python_router"), &cases, 7);
    passes(&example_plugin("js_router"), &cases, 7);
}

/// The HTTP examples pass their cases (egress denied, a refused connection).
#[test]
fn http_examples_pass_their_cases() {
    let root = repo_root();
    passes(
        &example_plugin("python_http"),
        &root.join("plugins/examples/python-http/CASES.toml"),
        3,
    );
    passes(
        &example_plugin("js_http"),
        &root.join("plugins/examples/js-http/CASES.toml"),
        3,
    );
}

/// A case that fails is shown as a diff of what was expected and what happened, the other
/// cases still run, and the command exits non-zero.
#[test]
fn a_failed_case_is_a_diff_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("CASES.toml");
    std::fs::write(
        &cases,
        r#"
[[case]]
name = "wrong priority and audit"
config = { audit = "audit" }
body_json = { route = "orders.eu", priority = 7 }
[case.expect]
republish = { routing_key = "orders.eu", priority = 5 }
publishes = [{ routing_key = "audit", body_contains = "orders.us" }]
logs = ["routed to orders.us"]

[[case]]
name = "a right one"
body = "not json"
expect = { verdict = "reject" }
"#,
    )
    .expect("write cases");
    let out = plugin_test(dir.path(), &rust_example_plugin("rust_router"), &cases);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for line in [
        "FAIL wrong priority and audit",
        "-    \"priority\": 5",
        "+    \"priority\": 7",
        "-      \"body_contains\": \"orders.us\"",
        "+      \"body_contains\": \"routed:orders.eu\"",
        "-    \"routed to orders.us\"",
        "+    \"info: routed to orders.eu\"",
        "ok   a right one",
        "1 passed, 1 failed",
        "error: 1 of 2 cases failed",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(
        !report.contains("\"routing_key\": \"orders.eu\"\n+"),
        "what matched is context, not a difference:\n{report}"
    );
}

/// A cases file with a mistake is refused before anything runs, naming the file, the case
/// and the key.
#[test]
fn a_bad_cases_file_names_the_case_and_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = rust_example_plugin("rust_router");
    for (cases, wanted) in [
        (
            "[[case]]\nname = 'a'\nexpect = {}\n",
            "case \"a\": expect.verdict is required",
        ),
        (
            "[[case]]\nname = 'a'\nbdy = 'x'\nexpect = { verdict = 'ack' }\n",
            "unknown field `bdy`",
        ),
        ("", "no cases: add one with [[case]]"),
    ] {
        std::fs::write(dir.path().join("CASES.toml"), cases).expect("write");
        let out = plugin_test(dir.path(), &wasm, Path::new("CASES.toml"));
        let report = text(&out);
        assert!(!out.status.success(), "{report}");
        assert!(
            report.contains("CASES.toml") && report.contains(wanted),
            "{wanted:?} not in {report}"
        );
    }
}

/// Where the wasm toolchain of the tests builds scaffolded Rust projects: kept between runs
/// (the one-line build command is the project's own; only its target folder is shared).
fn scaffold_target() -> PathBuf {
    repo_root().join("target/wasm-scaffold")
}

/// `warren plugin new my-plugin --lang LANG` in a fresh folder, its one-line build command
/// (with `path` first on PATH), then `warren plugin test` on the sample cases: passes.
/// Prints the time from `new` to the passing test.
fn new_builds_and_passes(lang: &str, path: Option<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let out = warren(dir.path(), &["plugin", "new", "my-plugin", "--lang", lang]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let project = dir.path().join("my-plugin");
    let build = said
        .lines()
        .find_map(|line| line.trim().strip_prefix("cd my-plugin && "))
        .unwrap_or_else(|| panic!("no build command in {said}"))
        .to_owned();
    let test = said
        .lines()
        .find_map(|line| line.trim().strip_prefix("warren plugin test "))
        .unwrap_or_else(|| panic!("no test command in {said}"))
        .to_owned();
    let mut command = Command::new("sh");
    command.args(["-c", &build]).current_dir(&project);
    command.env("CARGO_TARGET_DIR", scaffold_target());
    if let Some(path) = path {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![path];
        paths.extend(std::env::split_paths(&old));
        command.env("PATH", std::env::join_paths(paths).expect("PATH"));
    }
    let built = command.output().expect("run the build command");
    assert!(built.status.success(), "{build}:\n{}", text(&built));
    let built_at = started.elapsed();
    // The printed test command names the component the build wrote; a Rust build wrote it
    // into the shared target folder instead.
    let wasm = match lang {
        "rust" => scaffold_target().join("wasm32-wasip2/release/my_plugin.wasm"),
        _ => project.join(test.split_whitespace().next().expect("a .wasm")),
    };
    let wasm = wasm.to_str().expect("utf-8").to_owned();
    let out = warren(&project, &["plugin", "test", &wasm, "CASES.toml"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("3 passed, 0 failed"), "{report}");
    eprintln!(
        "{lang}: plugin new -> build ({:.1} s) -> passing plugin test: {:.1} s",
        built_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// A new Rust plugin builds outside the repository (its own workspace, the SDK copied in)
/// and passes its sample cases.
#[test]
fn new_rust_plugin_builds_and_passes_its_cases() {
    new_builds_and_passes("rust", None);
}

/// A new Python plugin builds with componentize-py and passes its sample cases.
#[test]
fn new_python_plugin_builds_and_passes_its_cases() {
    new_builds_and_passes("python", Some(tools().join("target/examples-venv/bin")));
}

/// A new JavaScript plugin builds with `npm install && npm run build` and passes its sample
/// cases.
#[test]
fn new_js_plugin_builds_and_passes_its_cases() {
    new_builds_and_passes("js", None);
}

/// The repository, once `plugins/examples/build --tools` has installed componentize-py,
/// pytest and componentize-js in it.
fn tools() -> PathBuf {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("plugins/examples/build"))
            .arg("--tools")
            .output()
            .expect("run plugins/examples/build --tools");
        assert!(out.status.success(), "{}", text(&out));
    });
    repo_root()
}

/// The Python helper module passes its tests (pytest, on bindings generated from the WIT).
#[test]
fn python_helpers_pass_pytest() {
    let root = tools();
    let out = Command::new(root.join("target/examples-venv/bin/python"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "plugin-sdk/python",
        ])
        .current_dir(&root)
        .env("PATH", venv_path(&root))
        .output()
        .expect("run pytest");
    let report = text(&out);
    eprintln!("{report}");
    assert!(
        out.status.success() && report.contains(" passed"),
        "{report}"
    );
}

fn venv_path(root: &Path) -> std::ffi::OsString {
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![root.join("target/examples-venv/bin")];
    paths.extend(std::env::split_paths(&old));
    std::env::join_paths(paths).expect("PATH")
}

/// The JavaScript helper module passes its tests (`node --test`).
#[test]
fn js_helpers_pass_node_test() {
    let root = repo_root();
    let out = Command::new("node")
        .args(["--test", "plugin-sdk/js/"])
        .current_dir(&root)
        .output()
        .expect("run node --test");
    let report = text(&out);
    eprintln!("{report}");
    assert!(
        out.status.success() && report.contains("# fail 0"),
        "{report}"
    );
}

/// Runs an HTTP example (body: a URL; result republished as JSON to `to`) in the daemon,
/// allowed to reach one loopback server: a URL on it gets the response; a URL on another
/// server, outside `allowed_hosts`, is denied by warren — the plugin sees the failure and
/// says so in its result — and that server is never reached.
async fn fetches_under_the_egress_policy(plugin: PathBuf, what: &str) -> serde_json::Value {
    let allowed = crate::http::serve("127.0.0.1:0").await;
    let outside = crate::http::serve("127.0.0.1:0").await;
    let broker = Broker::connect().await;
    let queue = unique(what);
    let out = unique(&format!("{what}-out"));
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let config = TestConfig::new()
        .plugin(
            "fetch",
            &plugin,
            &format!(r#"to = "{out}""#),
            &format!(r#"allowed_hosts = ["{}"]"#, allowed.addr),
        )
        .queue(&queue, "")
        .pipeline(&queue, &queue, "fetch", "");
    let daemon = start(&config.build()).await;

    let url = format!("http://{}/echo?q=1", allowed.addr);
    broker
        .publish(&queue, url.as_bytes(), BasicProperties::default())
        .await;
    let fetched: serde_json::Value =
        serde_json::from_slice(&broker.next(&out).await.delivery.data).expect("JSON result");
    assert_eq!(fetched["url"], url.as_str(), "{fetched}");
    assert_eq!(
        fetched["status"], 201,
        "the allowed server answered: {fetched}"
    );
    let echoed: serde_json::Value =
        serde_json::from_str(fetched["body"].as_str().expect("body")).expect("echo JSON");
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/echo");

    let url = format!("http://{}/echo", outside.addr);
    broker
        .publish(&queue, url.as_bytes(), BasicProperties::default())
        .await;
    let denied: serde_json::Value =
        serde_json::from_slice(&broker.next(&out).await.delivery.data).expect("JSON result");
    assert_eq!(denied["url"], url.as_str(), "{denied}");
    assert!(denied.get("status").is_none(), "no response: {denied}");
    assert_eq!(
        outside.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a host outside allowed_hosts is never reached"
    );
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
    denied
}

/// The Python HTTP example (componentize-py's wasi:http bindings, `warren_plugin.fetch`):
/// the denial reaches the plugin as wasi:http's `HTTP-request-denied`.
#[tokio::test]
async fn python_http_example_fetches_under_the_egress_policy() {
    let denied =
        fetches_under_the_egress_policy(example_plugin("python_http"), "python-http").await;
    assert_eq!(denied["error"], "HttpRequestDenied", "{denied}");
}

/// The JavaScript HTTP example (`fetch`): the denial reaches the plugin as a rejected fetch.
#[tokio::test]
async fn js_http_example_fetches_under_the_egress_policy() {
    let denied = fetches_under_the_egress_policy(example_plugin("js_http"), "js-http").await;
    assert!(
        denied["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{denied}"
    );
}
