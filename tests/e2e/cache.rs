//! The compile cache: `warren check` warms it and the next start compiles nothing; corrupted
//! entries are compiled afresh, never trusted; a plugin swapped for another build under the
//! same name is compiled, not taken from the cache. Each test has its own cache directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use lapin::BasicProperties;
use lapin::types::AMQPValue;

use crate::harness::{
    Broker, QUEUE_EXPIRES_MS, broker_url, header, replace_file, shipped_plugin, start_at,
    test_plugin, unique,
};

/// A temporary folder with `tagged.wasm` (a copy of `tag_a`) and a `warren.toml` that uses it
/// and the printer, with `cache_dir = "cache"` (relative to the config file).
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    queue: String,
    out: String,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::copy(test_plugin("tag_a"), dir.path().join("tagged.wasm")).expect("copy tag_a");
        let queue = unique("cache");
        let out = unique("cache-out");
        let config = dir.path().join("warren.toml");
        std::fs::write(
            &config,
            format!(
                r#"cache_dir = "cache"

[broker]
url = "{url}"

[plugins.tagged]
path = "tagged.wasm"
config = {{ to = "{out}" }}

[plugins.printer]
path = "{printer}"

[[queues]]
name = "{queue}"
arguments = {{ "x-expires" = {QUEUE_EXPIRES_MS} }}

[[pipelines]]
name = "cache"
queue = "{queue}"
plugin = "tagged"
"#,
                url = broker_url(),
                printer = shipped_plugin("printer").display(),
            ),
        )
        .expect("write config");
        Self {
            dir,
            config,
            queue,
            out,
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Runs `warren check`; asserts it succeeded; returns its stdout and stderr.
    fn check(&self) -> (String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["check", "--config", self.config.to_str().expect("utf-8")])
            .args(["--log-format", "json"])
            .env_remove("RUST_LOG")
            .output()
            .expect("run warren check");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "warren check failed:\n{stderr}{stdout}"
        );
        (stdout, stderr)
    }

    /// Runs `warren check` and asserts that both plugins were `compiled` or `cached` (as its
    /// summary and its log lines say); returns its log.
    fn check_expecting(&self, source: &str) -> String {
        let (stdout, stderr) = self.check();
        for plugin in ["tagged", "printer"] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("plugin   {plugin}: "))
                        && l.contains(&format!("({source} in "))),
                "{plugin} should be {source}:\n{stdout}"
            );
            let logged = stderr.lines().any(|line| {
                let event: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                let fields = &event["fields"];
                fields["message"] == "plugin loaded"
                    && fields["plugin"] == plugin
                    && fields["code"] == source
                    && fields["compile_ms"].is_u64()
            });
            assert!(logged, "the log line of {plugin} says {source}:\n{stderr}");
        }
        assert!(
            stdout.contains(&format!(
                "cache    {}",
                self.cache_dir().join("wasmtime").display()
            )),
            "{stdout}"
        );
        stderr
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read cache dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The cache's entries (compiled components): the files without an extension under
/// `modules/` (beside them are `.stats` files and locks).
fn entries(cache: &Path) -> Vec<PathBuf> {
    files(&cache.join("wasmtime/modules"))
        .into_iter()
        .filter(|p| p.extension().is_none())
        .collect()
}

/// `warren check` compiles and fills the cache; a second `check` and then a `run` (in-process)
/// on the same config compile nothing: every load is `cached`, in the log and in
/// `warren_plugin_compiles_total`.
#[tokio::test]
async fn check_warms_the_cache_and_the_next_start_compiles_nothing() {
    let broker = Broker::connect().await;
    let setup = Setup::new();
    broker.forget_later_queue(&setup.queue);
    setup.check_expecting("compiled");
    assert_eq!(entries(&setup.cache_dir()).len(), 2, "one entry per plugin");
    setup.check_expecting("cached");

    let config = setup.config.clone();
    let daemon = start_at(setup.dir, &config).await;
    let metrics = daemon.metrics.render();
    daemon.stop().await.expect("clean stop");
    for plugin in ["tagged", "printer"] {
        assert!(
            metrics.contains(&format!(
                r#"warren_plugin_compiles_total{{plugin="{plugin}",result="cached"}} 1"#
            )),
            "{metrics}"
        );
    }
    assert!(
        !metrics.contains(r#"result="compiled""#),
        "nothing compiled:\n{metrics}"
    );
    broker.cleanup().await;
}

/// Corrupted entries are never trusted: every file of the cache truncated, then every file
/// replaced by a well-formed zstd frame of garbage, then every entry decompressed, its
/// metadata section overwritten and compressed again (so wasmtime accepts it and it fails
/// to load). Each time `check` succeeds, every plugin compiled afresh; then the cache serves
/// again.
#[test]
fn corrupted_cache_entries_are_compiled_afresh() {
    let setup = Setup::new();
    setup.check_expecting("compiled");
    let cache = setup.cache_dir();

    for file in files(&cache) {
        let bytes = std::fs::read(&file).expect("read");
        std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
    }
    setup.check_expecting("compiled");
    setup.check_expecting("cached");

    for file in files(&cache) {
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let frame = zstd::encode_all(&garbage[..], 3).expect("compress");
        std::fs::write(&file, frame).expect("overwrite");
    }
    setup.check_expecting("compiled");
    setup.check_expecting("cached");

    let entries = entries(&cache);
    assert_eq!(entries.len(), 2, "one entry per plugin");
    for entry in entries {
        let compressed = std::fs::read(&entry).expect("read entry");
        let mut object = zstd::decode_all(&compressed[..]).expect("an entry is a zstd frame");
        let info = elf_section(&object, ".wasmtime.info").expect("a .wasmtime.info section");
        object[info].fill(0xff);
        std::fs::write(&entry, zstd::encode_all(&object[..], 3).expect("compress")).expect("write");
    }
    let log = setup.check_expecting("compiled");
    assert!(
        log.contains("a compile cache entry does not load; clearing the cache and compiling"),
        "{log}"
    );
    setup.check_expecting("cached");
}

/// The byte range of the section `name` in a 64-bit little-endian ELF file.
fn elf_section(elf: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    if elf.get(..4)? != b"\x7fELF" {
        return None;
    }
    let table = u64_at(0x28)? as usize;
    let entry_size = usize::from(u16_at(0x3a)?);
    let count = usize::from(u16_at(0x3c)?);
    let names_index = usize::from(u16_at(0x3e)?);
    let header = |i: usize| table + i * entry_size;
    let names = u64_at(header(names_index) + 0x18)? as usize;
    (0..count).find_map(|i| {
        let at = header(i);
        let name_at = names + u32_at(at)? as usize;
        let this = elf.get(name_at..name_at + name.len() + 1)?;
        if &this[..name.len()] != name.as_bytes() || this[name.len()] != 0 {
            return None;
        }
        let offset = u64_at(at + 0x18)? as usize;
        let size = u64_at(at + 0x20)? as usize;
        Some(offset..offset + size)
    })
}

/// A plugin file replaced by another build (same name, another hash) is compiled afresh on
/// reload — the new build serves, not a cached copy of the old one — and swapping back to
/// the first build takes it from the cache.
#[tokio::test]
async fn a_swapped_plugin_is_compiled_afresh() {
    let broker = Broker::connect().await;
    let setup = Setup::new();
    broker.forget_later_queue(&setup.queue);
    broker.queue(&setup.out).await;
    let plugin = setup.dir.path().join("tagged.wasm");
    let (queue, out) = (setup.queue.clone(), setup.out.clone());
    let config = setup.config.clone();
    let daemon = start_at(setup.dir, &config).await;
    let handled_by = async |tag: &str| {
        broker
            .publish(&queue, tag.as_bytes(), BasicProperties::default())
            .await;
        let m = broker.next(&out).await;
        assert_eq!(
            header(&m.delivery.properties, "tag"),
            Some(&AMQPValue::LongString(tag.into())),
            "handled by tag_{tag}"
        );
    };
    handled_by("a").await;

    replace_file(
        &plugin,
        &std::fs::read(test_plugin("tag_b")).expect("tag_b"),
    );
    daemon
        .wait_metric(
            "warren_plugin_compiles_total",
            &[("plugin", "tagged"), ("result", "compiled")],
            2.0,
        )
        .await;
    handled_by("b").await;

    replace_file(
        &plugin,
        &std::fs::read(test_plugin("tag_a")).expect("tag_a"),
    );
    daemon
        .wait_metric(
            "warren_plugin_compiles_total",
            &[("plugin", "tagged"), ("result", "cached")],
            1.0,
        )
        .await;
    handled_by("a").await;
    let metrics = daemon.metrics.render();
    daemon.stop().await.expect("clean stop");
    assert!(
        metrics.contains(r#"warren_plugin_compiles_total{plugin="tagged",result="compiled"} 2"#),
        "{metrics}"
    );
    broker.cleanup().await;
}

/// A cache directory that cannot be created, or that others can write to, is a warning: the
/// check (and so the start) goes on without a cache, every plugin compiled.
#[test]
fn an_unusable_cache_dir_is_a_warning_not_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let text = std::fs::read_to_string(&setup.config).expect("config");
    std::fs::write(setup.dir.path().join("a-file"), b"").expect("a file");
    let open = setup.dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for (dir, why) in [
        ("a-file/cache", "cannot create"),
        ("open", "others can write to it"),
    ] {
        let config = text.replace("cache_dir = \"cache\"", &format!("cache_dir = \"{dir}\""));
        std::fs::write(&setup.config, config).expect("write config");
        let (stdout, stderr) = setup.check();
        assert!(
            stdout.contains("cache    none: every start compiles every plugin"),
            "{stdout}"
        );
        assert!(stdout.contains("(compiled in "), "{stdout}");
        let warned = stderr.lines().any(|line| {
            line.contains("\"WARN\"") && line.contains("compile cache off") && line.contains(why)
        });
        assert!(warned, "a warning saying {why:?}:\n{stderr}");
    }
    assert!(
        std::fs::read_dir(&open).expect("open").next().is_none(),
        "nothing written to a directory others can write to"
    );
}
