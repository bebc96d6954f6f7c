//! `warren plugin test`: runs a plugin on every case of a cases file and reports each as
//! passed, or failed with a diff.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;

use super::cases::{self, Case, CasesFile};
use super::expect::{Observed, compare};
use crate::plugin::Runtime;
use crate::plugin::cache::CacheSetting;
use crate::plugin::spec::{HttpLimits, Limits, PluginSettings, PublishRules};
use crate::telemetry::PluginLogs;

/// `warren plugin test`: its command-line arguments.
#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    /// The plugin's .wasm component.
    pub file: PathBuf,
    /// The cases file (TOML): see `warren plugin new` for a sample.
    pub cases: PathBuf,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
}

/// How many cases passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cases whose outcome matched.
    pub passed: usize,
    /// Cases whose outcome did not.
    pub failed: usize,
}

/// Runs the cases and prints the report on stdout. `logs` must be the capture installed
/// with the logger (`telemetry::init`): each case's plugin log lines are read from it.
/// An error (no such file, a bad cases file, a plugin that does not compile) is not a tally.
pub async fn command(args: PluginTestArgs, logs: PluginLogs) -> anyhow::Result<Tally> {
    let file = cases::read(&args.cases)?;
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let runtime = Runtime::new(&CacheSetting::Default)?;
    let base = settings(&name, &args.file, &file, Vec::new())?;
    let plugin = runtime.load_code(&base).await?;
    println!(
        "{} ({}): {} against {}",
        args.file.display(),
        plugin.version(),
        plural(file.cases.len(), "case"),
        args.cases.display()
    );
    let mut tally = Tally::default();
    let pipeline: Arc<str> = Arc::from(name.as_str());
    for case in &file.cases {
        if args
            .only
            .as_ref()
            .is_some_and(|only| !case.name.contains(only.as_str()))
        {
            continue;
        }
        logs.take();
        let settings = settings(&name, &args.file, &file, case.plugin_config(&file.plugin))?;
        let outcome = observe(&plugin, &settings, &pipeline, case).await;
        let observed = Observed {
            outcome,
            logs: logs.take(),
        };
        match compare(case, &observed) {
            None => {
                tally.passed += 1;
                println!("ok   {}", case.name);
            }
            Some(diff) => {
                tally.failed += 1;
                print!("FAIL {}\n{}", case.name, indent(&diff));
            }
        }
    }
    println!("\n{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally)
}

/// The plugin's outcome for `case`'s message as `warren plugin run` shows it, on a fresh
/// instance `init`ed with the case's config; or the error that stopped it.
async fn observe(
    plugin: &crate::plugin::Plugin,
    settings: &PluginSettings,
    pipeline: &Arc<str>,
    case: &Case,
) -> Result<serde_json::Value, String> {
    let instance = plugin
        .with_settings(settings)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let outcome = instance
        .handle(pipeline, &mut Box::new(case.message()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(crate::try_plugin::outcome_json(&outcome))
}

fn settings(
    name: &str,
    path: &std::path::Path,
    file: &CasesFile,
    config: Vec<(String, String)>,
) -> anyhow::Result<PluginSettings> {
    let mut limits = Limits::default();
    if let Some(ms) = file.plugin.timeout_ms {
        limits.timeout = std::time::Duration::from_millis(ms);
    }
    PluginSettings::new(
        name.to_owned(),
        path.to_owned(),
        config,
        limits,
        file.plugin.allowed_hosts.clone(),
        HttpLimits::default(),
        PublishRules::default(),
    )
    .map_err(|bad| anyhow!("[plugin] {}: {}", bad.key, bad.error))
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}
