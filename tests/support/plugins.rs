//! The `.wasm` plugins the tests and benches load, each build script run once per run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("daemon/ has a parent")
        .to_path_buf()
}

/// Runs the build script `script` (relative to the repository) unless `done` says it ran;
/// a failed build fails the test with the script's output.
fn build_once(done: &'static OnceLock<Result<(), String>>, script: &str) {
    let result = done.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo_root().join(script))
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Builds the shipped, Rust example and test plugins once per run (`plugins/build`) and
/// returns the path of `name` in `dist`.
fn built(dist: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    build_once(&BUILT, "plugins/build");
    repo_root().join(dist).join(format!("{name}.wasm"))
}

/// Path of a shipped plugin (`printer`, ...), built if needed.
pub fn shipped_plugin(name: &str) -> PathBuf {
    built("plugins/dist", name)
}

/// Path of the Rust example plugin (`rust_router`), built if needed.
pub fn rust_example_plugin(name: &str) -> PathBuf {
    built("plugins/examples/dist", name)
}

/// Path of a test-only plugin (`scripted`), built if needed.
pub fn test_plugin(name: &str) -> PathBuf {
    built("tests/plugins/dist", name)
}

/// Path of a Python or JavaScript example plugin (`python_router`, `js_router`), built once
/// per run by `plugins/examples/build` (which installs componentize-py and componentize-js
/// on first use and rebuilds only what changed).
pub fn example_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    build_once(&BUILT, "plugins/examples/build");
    repo_root()
        .join("plugins/examples/dist")
        .join(format!("{name}.wasm"))
}
