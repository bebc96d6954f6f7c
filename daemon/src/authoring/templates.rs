//! The project templates of `warren plugin new`, embedded in the binary: each language's
//! files, and the copies of the contract, the Rust SDK and the helper modules that make a
//! project build against this warren's contract version.

use super::new::Lang;

/// A file of a new project: its path in the project, and its text.
#[derive(Debug, Clone, Copy)]
pub struct File {
    /// Relative to the project's folder.
    pub path: &'static str,
    /// The text; `{{name}}`-style placeholders are filled in only if `fill` is set.
    pub text: &'static str,
    /// A template (placeholders filled in) rather than a verbatim copy.
    pub fill: bool,
}

const fn template(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        fill: true,
    }
}

const fn copy(path: &'static str, text: &'static str) -> File {
    File {
        path,
        text,
        fill: false,
    }
}

/// The contract: `plugin-sdk/wit/`, with the WASI packages its `plugin-http` world uses.
const WIT: [(&str, &str); 8] = [
    (
        "plugin.wit",
        include_str!("../../../plugin-sdk/wit/plugin.wit"),
    ),
    (
        "deps/cli.wit",
        include_str!("../../../plugin-sdk/wit/deps/cli.wit"),
    ),
    (
        "deps/clocks.wit",
        include_str!("../../../plugin-sdk/wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../plugin-sdk/wit/deps/filesystem.wit"),
    ),
    (
        "deps/http.wit",
        include_str!("../../../plugin-sdk/wit/deps/http.wit"),
    ),
    (
        "deps/io.wit",
        include_str!("../../../plugin-sdk/wit/deps/io.wit"),
    ),
    (
        "deps/random.wit",
        include_str!("../../../plugin-sdk/wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../plugin-sdk/wit/deps/sockets.wit"),
    ),
];

/// The Rust SDK crate, as it is in `plugin-sdk/` (its `wit/` is [`WIT`]).
const SDK: [File; 8] = [
    copy(
        "warren-plugin-sdk/Cargo.toml",
        include_str!("../../../plugin-sdk/Cargo.toml"),
    ),
    copy(
        "warren-plugin-sdk/README.md",
        include_str!("../../../plugin-sdk/README.md"),
    ),
    copy(
        "warren-plugin-sdk/src/lib.rs",
        include_str!("../../../plugin-sdk/src/lib.rs"),
    ),
    copy(
        "warren-plugin-sdk/src/config.rs",
        include_str!("../../../plugin-sdk/src/config.rs"),
    ),
    copy(
        "warren-plugin-sdk/src/log.rs",
        include_str!("../../../plugin-sdk/src/log.rs"),
    ),
    copy(
        "warren-plugin-sdk/src/message.rs",
        include_str!("../../../plugin-sdk/src/message.rs"),
    ),
    copy(
        "warren-plugin-sdk/src/types.rs",
        include_str!("../../../plugin-sdk/src/types.rs"),
    ),
    copy(
        "warren-plugin-sdk/src/value.rs",
        include_str!("../../../plugin-sdk/src/value.rs"),
    ),
];

/// Every language's: the sample cases and the README.
const COMMON: [File; 2] = [
    template(
        "CASES.toml",
        include_str!("../../templates/common/CASES.toml"),
    ),
    template(
        "README.md",
        include_str!("../../templates/common/README.md"),
    ),
];

const RUST: [File; 3] = [
    template(
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    template(
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    copy(".gitignore", include_str!("../../templates/rust/gitignore")),
];

const PYTHON: [File; 3] = [
    template("app.py", include_str!("../../templates/python/app.py")),
    copy(
        ".gitignore",
        include_str!("../../templates/python/gitignore"),
    ),
    copy(
        "warren_plugin.py",
        include_str!("../../../plugin-sdk/python/warren_plugin.py"),
    ),
];

const JS: [File; 5] = [
    template("plugin.js", include_str!("../../templates/js/plugin.js")),
    template(
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    template(
        "componentize.mjs",
        include_str!("../../templates/js/componentize.mjs"),
    ),
    copy(".gitignore", include_str!("../../templates/js/gitignore")),
    copy(
        "warren_plugin.js",
        include_str!("../../../plugin-sdk/js/warren_plugin.js"),
    ),
];

/// Every file of a new project in `lang`, the contract's included (under `wit/`, or for
/// Rust inside the SDK copy).
pub fn files(lang: Lang) -> Vec<(String, File)> {
    let (own, wit_dir): (&[File], &str) = match lang {
        Lang::Rust => (&RUST, "warren-plugin-sdk/wit"),
        Lang::Python => (&PYTHON, "wit"),
        Lang::Js => (&JS, "wit"),
    };
    let mut files: Vec<(String, File)> = COMMON
        .iter()
        .chain(own)
        .chain(if lang == Lang::Rust { &SDK[..] } else { &[] })
        .map(|file| (file.path.to_owned(), *file))
        .collect();
    files.extend(
        WIT.iter()
            .map(|&(path, text)| (format!("{wit_dir}/{path}"), copy(path, text))),
    );
    files
}
