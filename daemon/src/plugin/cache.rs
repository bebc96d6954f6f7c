//! The compile cache: where compiled plugins are kept between starts, and whether a load was
//! compiled or came from it.
//!
//! It is wasmtime's own compilation cache (`wasmtime::Cache`), not a loader of ours: loading
//! precompiled code ourselves would need `Component::deserialize`, which is `unsafe`. What
//! warren relies on, as read in wasmtime 48.0.8 (`wasmtime-internal-cache`, and
//! `compile/runtime.rs` in `wasmtime`):
//!
//! - **Key.** An entry is named by the SHA-256 of the component's bytes together with the
//!   engine's compile settings (target, Cranelift flags, tunables, wasm features), under a
//!   folder per wasmtime version (`modules/wasmtime-48.0.8/`). A changed plugin, another engine
//!   setting or another wasmtime never finds an old entry.
//! - **Writes are atomic.** An entry is zstd-compressed, written to a new temporary file
//!   (`create_new`) and renamed over its name, so a reader sees a whole entry or none.
//! - **Unreadable entries are rebuilt.** An entry that does not decompress (truncated,
//!   garbage), is not a wasmtime ELF object, or was built for another engine (version, target,
//!   flags, features: checked against the object's own header) is ignored: the component is
//!   compiled afresh and the entry rewritten.
//! - **Not verified: the code itself.** The zstd frames carry no checksum, and nothing binds
//!   an entry's content to its name, so an entry that decodes to a valid object of the right
//!   engine (bit rot inside it, or another plugin's entry under this one's name) would be
//!   used. Such code runs outside the WebAssembly sandbox, so the cache directory is trusted
//!   like the binary: warren uses it only if it belongs to warren's user (or root) and no one
//!   else can write to it (the directories warren creates are `0700`). If a cache entry passes
//!   those checks but the component still fails to load from it, warren clears the cache and
//!   compiles once more (see [`CompileCache::clear`]).
//! - **Pruning.** wasmtime's cache worker (a background thread) deletes old entries beyond
//!   512 MiB or 65,536 files, and deletes *every file it does not recognise* in its folder.
//!   So wasmtime gets a folder of its own, [`WASMTIME_SUBDIR`] under the cache directory, and
//!   never the configured directory itself.
//! - **Hit and miss counters.** `Cache::cache_hits` counts entries used, `cache_misses` entries
//!   compiled and stored. They are per `Cache` (shared by its clones), so the [`Runtime`]
//!   compiles one plugin at a time and compares the counters around each compile.
//!
//! [`Runtime`]: super::Runtime

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folder under the cache directory that wasmtime manages (and prunes) by itself.
pub const WASMTIME_SUBDIR: &str = "wasmtime";

/// Where the compile cache lives, as the config says (`cache_dir`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheSetting {
    /// `cache_dir` not set: `$CACHE_DIRECTORY` (systemd's `CacheDirectory=`), else
    /// `$XDG_CACHE_HOME/warren`, else `$HOME/.cache/warren`.
    #[default]
    Default,
    /// `cache_dir = "DIR"`, resolved against the config file's directory.
    Dir(PathBuf),
    /// `cache_dir = false`: every load compiles.
    Off,
}

/// Where a loaded plugin's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled by this load (and stored in the cache, if there is one).
    Compiled,
    /// Taken from the compile cache.
    Cached,
}

impl Source {
    /// `compiled` or `cached`: the log field and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Compiled => "compiled",
            Source::Cached => "cached",
        }
    }
}

/// How a plugin's component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compilation {
    /// Compiled or from the cache.
    pub source: Source,
    /// Wall time of the compile (or of reading it from the cache).
    pub took: Duration,
}

/// The cache directory `setting` names; `Ok(None)` when the cache is off. `env` reads an
/// environment variable (a parameter, so that this is testable).
pub fn resolve(
    setting: &CacheSetting,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<PathBuf>, String> {
    let absolute = |value: OsString| Some(PathBuf::from(value)).filter(|p| p.is_absolute());
    match setting {
        CacheSetting::Off => Ok(None),
        CacheSetting::Dir(dir) => Ok(Some(dir.clone())),
        CacheSetting::Default => {
            // systemd may list several directories, separated by ':' (one per
            // `CacheDirectory=` entry): the first is warren's.
            let systemd = env("CACHE_DIRECTORY").and_then(|dirs| {
                let dirs = dirs.to_string_lossy().into_owned();
                dirs.split(':')
                    .find(|d| !d.is_empty())
                    .and_then(|d| absolute(d.into()))
            });
            // The XDG spec: a relative $XDG_CACHE_HOME is to be ignored.
            let xdg = || {
                env("XDG_CACHE_HOME")
                    .and_then(absolute)
                    .map(|d| d.join("warren"))
            };
            let home = || {
                env("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".cache").join("warren"))
            };
            systemd.or_else(xdg).or_else(home).map(Some).ok_or_else(|| {
                "no cache directory: none of $CACHE_DIRECTORY, $XDG_CACHE_HOME and $HOME is set \
                 to an absolute path; set cache_dir in the config"
                    .to_owned()
            })
        }
    }
}

/// Why a directory with this owner and mode cannot hold code warren runs, if it cannot: it
/// must belong to warren's user (or root) and be writable by no one else.
pub fn untrusted(owner: u32, mode: u32, euid: u32) -> Option<String> {
    if owner != euid && owner != 0 {
        return Some(format!(
            "it belongs to uid {owner}, not to warren's user (uid {euid})"
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "others can write to it (mode {:o}); chmod go-w it",
            mode & 0o7777
        ));
    }
    None
}

/// wasmtime's compilation cache for one engine, with its hit and miss counters.
#[derive(Clone)]
pub struct CompileCache {
    cache: wasmtime::Cache,
    /// The folder wasmtime manages: `<cache dir>/wasmtime`.
    dir: PathBuf,
}

impl CompileCache {
    /// Opens the cache `setting` names, creating its directory (mode `0700`). Any problem (no
    /// directory can be found or created, it is not safe to trust) is logged as a warning and
    /// gives `None`: warren then compiles every plugin, and starts all the same.
    pub fn open(setting: &CacheSetting) -> Option<Self> {
        let dir = match resolve(setting, |name| std::env::var_os(name)) {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                tracing::info!("compile cache off (cache_dir = false): every plugin load compiles");
                return None;
            }
            Err(why) => {
                tracing::warn!("compile cache off: {why}");
                return None;
            }
        };
        match Self::open_at(&dir) {
            Ok(cache) => {
                tracing::info!(dir = %cache.dir.display(), "compile cache");
                Some(cache)
            }
            Err(why) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "compile cache off: {why}; every plugin load compiles"
                );
                None
            }
        }
    }

    fn open_at(dir: &Path) -> Result<Self, String> {
        let dir = std::path::absolute(dir).map_err(|e| format!("cannot make it absolute: {e}"))?;
        let wasmtime_dir = dir.join(WASMTIME_SUBDIR);
        let euid = rustix::process::geteuid().as_raw();
        // The directory, then wasmtime's folder in it: each checked before anything is put in it.
        for d in [&dir, &wasmtime_dir] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            let meta =
                std::fs::metadata(d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
            if let Some(why) = untrusted(meta.uid(), meta.mode(), euid) {
                return Err(format!(
                    "{} cannot be trusted with machine code: {why}",
                    d.display()
                ));
            }
        }
        let mut config = wasmtime::CacheConfig::new();
        config.with_directory(&wasmtime_dir);
        let cache = wasmtime::Cache::new(config).map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            cache,
            dir: wasmtime_dir,
        })
    }

    /// The wasmtime cache, for the engine's config.
    pub fn wasmtime(&self) -> wasmtime::Cache {
        self.cache.clone()
    }

    /// Entries used and entries stored so far, by this cache's engine.
    pub fn counts(&self) -> (usize, usize) {
        (self.cache.cache_hits(), self.cache.cache_misses())
    }

    /// The folder wasmtime keeps its entries in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every entry. For an entry that wasmtime accepted but that still failed to load:
    /// which file it was is not known (its name is a hash of wasmtime's internal state).
    pub fn clear(&self) {
        let modules = self.dir.join("modules");
        if let Err(e) = std::fs::remove_dir_all(&modules)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %modules.display(), error = %e, "cannot clear the compile cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    fn default_dir(vars: &[(&str, &str)]) -> Result<Option<PathBuf>, String> {
        resolve(&CacheSetting::Default, env(vars))
    }

    #[test]
    fn the_config_wins_and_false_is_off() {
        let all = [
            ("CACHE_DIRECTORY", "/var/cache/warren"),
            ("HOME", "/home/w"),
        ];
        let dir = CacheSetting::Dir("/srv/cache".into());
        assert_eq!(resolve(&dir, env(&all)), Ok(Some("/srv/cache".into())));
        assert_eq!(resolve(&CacheSetting::Off, env(&all)), Ok(None));
    }

    #[test]
    fn the_default_is_systemd_then_xdg_then_home() {
        let systemd = ("CACHE_DIRECTORY", "/var/cache/warren");
        let xdg = ("XDG_CACHE_HOME", "/home/w/.xdg-cache");
        let home = ("HOME", "/home/w");
        let some = |p: &str| Ok(Some(PathBuf::from(p)));
        assert_eq!(
            default_dir(&[systemd, xdg, home]),
            some("/var/cache/warren")
        );
        assert_eq!(default_dir(&[xdg, home]), some("/home/w/.xdg-cache/warren"));
        assert_eq!(default_dir(&[home]), some("/home/w/.cache/warren"));
        assert!(default_dir(&[]).is_err());
    }

    #[test]
    fn the_first_of_several_systemd_directories_is_taken() {
        let vars = [("CACHE_DIRECTORY", "/var/cache/warren:/var/cache/other")];
        assert_eq!(default_dir(&vars), Ok(Some("/var/cache/warren".into())));
    }

    #[test]
    fn relative_or_empty_directories_from_the_environment_are_ignored() {
        let vars = [
            ("CACHE_DIRECTORY", ""),
            ("XDG_CACHE_HOME", "relative/cache"),
            ("HOME", "/home/w"),
        ];
        assert_eq!(default_dir(&vars), Ok(Some("/home/w/.cache/warren".into())));
    }

    /// wasmtime deletes whatever it does not recognise in its directory: it must never be
    /// given the configured one (which may hold other things), only a folder of its own.
    #[test]
    fn wasmtime_gets_a_folder_of_its_own() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = CompileCache::open_at(dir.path()).expect("a usable cache");
        let own = std::fs::canonicalize(dir.path().join(WASMTIME_SUBDIR)).expect("created");
        assert_eq!(cache.wasmtime().directory(), &own);
        assert_eq!(cache.dir(), dir.path().join(WASMTIME_SUBDIR));
        let mode = std::fs::metadata(&own).expect("meta").mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn only_a_directory_no_one_else_can_write_is_trusted() {
        assert_eq!(untrusted(1000, 0o40700, 1000), None);
        assert_eq!(untrusted(1000, 0o40755, 1000), None);
        assert_eq!(untrusted(0, 0o40755, 1000), None, "root's own directory");
        assert!(untrusted(1001, 0o40700, 1000).is_some_and(|w| w.contains("uid 1001")));
        assert!(untrusted(1000, 0o40775, 1000).is_some_and(|w| w.contains("chmod go-w")));
        assert!(untrusted(1000, 0o41777, 1000).is_some());
    }
}
