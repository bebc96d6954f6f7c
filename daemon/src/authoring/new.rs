//! `warren plugin new`: writes a plugin project that builds as it is, against this
//! warren's contract, with a sample cases file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::templates;
use crate::contract::CONTRACT_VERSION;

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the SDK crate (copied into the project).
    Rust,
    /// Python, with componentize-py and the helper module `warren_plugin.py`.
    Python,
    /// JavaScript, with componentize-js and the helper module `warren_plugin.js`.
    Js,
}

/// `warren plugin new`: its command-line arguments.
#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lower-case letters, digits and dashes, starting with a letter.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write the project (default: ./NAME). It must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What a new project is built and checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Its folder.
    pub dir: PathBuf,
    /// The one command that builds it, run in its folder.
    pub build: String,
    /// The component the build writes, relative to the folder.
    pub wasm: String,
}

/// Writes the project and says how to build and test it.
pub fn command(args: PluginNewArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let project = create(&args.name, args.lang, &dir)?;
    println!(
        "Created {} plugin {} in {}.\n\nBuild it:\n    cd {} && {}\nCheck it:\n    warren plugin test {} CASES.toml\n",
        language(args.lang),
        args.name,
        project.dir.display(),
        project.dir.display(),
        project.build,
        project.wasm,
    );
    Ok(())
}

/// Writes the project of plugin `name` in `lang` into `dir`.
pub fn create(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<Project> {
    check_name(name)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and cannot be read", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty: choose another --dir, or remove it",
                dir.display()
            );
        }
    }
    let module = name.replace('-', "_");
    let (build, wasm, needs) = match lang {
        Lang::Rust => (
            "cargo build --release --target wasm32-wasip2".to_owned(),
            format!("target/wasm32-wasip2/release/{module}.wasm"),
            "It needs Rust's `wasm32-wasip2` target (`rustup target add wasm32-wasip2`, \
             once). `warren-plugin-sdk/` is the SDK of the warren that made this project.",
        ),
        Lang::Python => (
            format!("componentize-py -d wit -w plugin componentize app -o {module}.wasm"),
            format!("{module}.wasm"),
            "It needs componentize-py 0.25.1 (`pip install componentize-py==0.25.1`, in a \
             venv). `warren_plugin.py` is warren's helper module, `wit/` warren's contract.",
        ),
        Lang::Js => (
            "npm install && npm run build".to_owned(),
            format!("{module}.wasm"),
            "It needs node and npm; `npm install` fetches componentize-js 0.23.0. \
             `warren_plugin.js` is warren's helper module, `wit/` warren's contract.",
        ),
    };
    let values = [
        ("{{name}}", name),
        ("{{module}}", module.as_str()),
        ("{{contract}}", CONTRACT_VERSION),
        ("{{warren}}", env!("CARGO_PKG_VERSION")),
        ("{{language}}", language(lang)),
        ("{{build}}", build.as_str()),
        ("{{wasm}}", wasm.as_str()),
        ("{{needs}}", needs),
    ];
    for (path, file) in templates::files(lang) {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = if file.fill {
            values
                .iter()
                .fold(file.text.to_owned(), |text, (key, value)| {
                    text.replace(key, value)
                })
        } else {
            file.text.to_owned()
        };
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(Project {
        dir: dir.to_owned(),
        build,
        wasm,
    })
}

fn language(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

/// A name that is a crate name, a Python module name (dashes made underscores) and a file
/// name everywhere.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_well || !rest_ok || name.ends_with('-') || name.len() > 64 {
        bail!(
            "plugin name {name:?}: use lower-case letters, digits and dashes, starting with a \
             letter (for example `order-router`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_and_module_names() {
        for good in ["router", "order-router", "r2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Router", "2r", "a_b", "a-", "a b", "ü"] {
            let error = check_name(bad).expect_err(bad).to_string();
            assert!(error.contains("lower-case letters"), "{error}");
        }
    }

    #[test]
    fn every_template_is_filled_in() -> anyhow::Result<()> {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = tempfile::tempdir()?;
            let project = create("my-plugin", lang, dir.path())?;
            for (path, file) in templates::files(lang) {
                let text = std::fs::read_to_string(project.dir.join(&path))?;
                assert!(
                    !file.fill || !text.contains("{{"),
                    "{lang:?} {path} has a placeholder left"
                );
            }
            let cases = std::fs::read_to_string(dir.path().join("CASES.toml"))?;
            assert!(cases.contains("x-handled-by = \"my-plugin\""), "{cases}");
            let again = create("my-plugin", lang, dir.path()).expect_err("not empty");
            assert!(again.to_string().contains("is not empty"), "{again}");
        }
        Ok(())
    }
}
