//! `plugin-sdk/README.md` stays true: every code block in it is built or run by a test.
//!
//! - a `rust` block is a doctest of the SDK crate (`cargo test` in `plugin-sdk/` compiles and
//!   runs it: the crate includes the README under `cfg(doctest)`);
//! - a `toml` cases block followed by a `text` block is run with `warren plugin test` on the
//!   Rust example router, and the `text` block must be in what it prints;
//! - an `sh` block holds only commands the scaffolding tests run (`warren plugin new`, the
//!   build and test commands it prints);
//! - any other block (a `rust,ignore` file, Python, JavaScript, TOML) is, verbatim, in a
//!   file that the tests build or run: a project `warren plugin new` writes, an example,
//!   a helper module, a cases file.

use std::path::Path;
use std::process::Command;

use crate::support::{repo_root, rust_example_plugin};

/// The fenced blocks of a Markdown text: (info string, body).
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some("")) => found.extend(open.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    found
}

/// Every file under `dir`, read as text.
fn texts_under(dir: &Path, into: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            texts_under(&path, into);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            into.push(text);
        }
    }
}

/// The projects `warren plugin new my-plugin` writes, as the scaffolding tests build them:
/// their files, and the commands it prints (with the `warren plugin new` line itself).
fn scaffolds() -> (Vec<String>, Vec<String>) {
    let mut files = Vec::new();
    let mut commands = Vec::new();
    for lang in ["rust", "python", "js"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["plugin", "new", "my-plugin", "--lang", lang])
            .current_dir(dir.path())
            .output()
            .expect("run warren plugin new");
        assert!(out.status.success(), "{out:?}");
        commands.push(format!("warren plugin new my-plugin --lang {lang}"));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let line = line.trim();
            if let Some(build) = line.strip_prefix("cd my-plugin && ") {
                commands.push(build.to_owned());
            } else if line.starts_with("warren plugin test ") {
                commands.push(line.to_owned());
            }
        }
        texts_under(&dir.path().join("my-plugin"), &mut files);
    }
    (files, commands)
}

/// Runs the cases of `toml` on the Rust example router; what `warren plugin test` prints.
fn run_cases(toml: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("CASES.toml"), toml).expect("write cases");
    let wasm = rust_example_plugin("rust_router");
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "plugin",
            "test",
            wasm.to_str().expect("utf-8"),
            "CASES.toml",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run warren plugin test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_code_block_of_the_sdk_readme_is_built_by_a_test() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("plugin-sdk/README.md")).expect("README");
    let lib = std::fs::read_to_string(root.join("plugin-sdk/src/lib.rs")).expect("lib.rs");
    assert!(
        lib.contains("#[doc = include_str!(\"../README.md\")]\n#[cfg(doctest)]"),
        "the SDK no longer compiles its README's Rust blocks as doctests"
    );
    let (mut files, commands) = scaffolds();
    for dir in [
        "plugins/examples",
        "plugin-sdk/python",
        "plugin-sdk/js",
        "plugins/printer",
    ] {
        texts_under(&root.join(dir), &mut files);
    }
    let blocks = blocks(&readme);
    assert!(blocks.len() > 10, "{} blocks", blocks.len());
    for (i, (info, body)) in blocks.iter().enumerate() {
        let language = info.split(',').next().unwrap_or_default();
        let next = blocks.get(i + 1).map(|(info, _)| info.as_str());
        match language {
            "rust" if !info.contains("ignore") => {}
            "toml" if next == Some("text") => {}
            "text" => {
                let (_, cases) = &blocks[i - 1];
                let report = run_cases(cases);
                assert!(
                    report.contains(body.as_str()),
                    "README block {i} is not what `warren plugin test` prints for the cases \
                     before it; it prints:\n{report}"
                );
            }
            "sh" => {
                for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    assert!(
                        commands.iter().any(|c| c == line),
                        "README block {i}: `{line}` is not a command the tests run \
                         ({commands:?})"
                    );
                }
            }
            _ => assert!(
                files.iter().any(|file| file.contains(body.as_str())),
                "README block {i} ({info}) is in no file the tests build or run: paste the \
                 file again\n{body}"
            ),
        }
    }
}
