//! The plugin host: one wasmtime engine, plugins compiled once and instantiated from a pre-linked component.
//!
//! A [`Plugin`] is one loaded version of one `.wasm` file. It keeps a pool of initialised
//! instances, each with its own store, reused from message to message; an instance that
//! traps or times out is dropped and a fresh one takes its place. Swapping plugin versions
//! is swapping an `Arc<Plugin>`: calls in flight keep the version they started with.

pub mod cache;
mod contract_check;
pub mod egress;
mod host;
mod http_client;
mod invoke;
mod log;
mod pool;
pub mod registry;
pub mod spec;
pub mod trust;

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};

use crate::contract as bindings;
use wasmtime::{Config as EngineConfig, Engine};

use cache::{CacheSetting, Compilation, CompileCache, Source};
use contract_check::{Contract, check_contract};
pub use host::{HostState, MAX_PUBLISHES_PER_MESSAGE};
pub use invoke::{Outcome, PluginError};
pub use log::{LOG_LINES_PER_SECOND, LogCounter};
pub use pool::IDLE_INSTANCE_TTL;
use spec::{Limits, PluginSettings, PublishRules};

/// How often the epoch advances; a call that overruns its deadline stops within one tick,
/// and a guest computing without pause yields to other tasks once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The shared wasmtime engine and linker, the compile cache, and the thread that ticks the
/// epoch.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: Option<CompileCache>,
    /// Held while compiling: one compile at a time, so that the cache's hit and miss counters
    /// before and after a compile are that compile's. (Each compile uses every core.)
    compiling: Arc<Mutex<()>>,
    /// Where the plugins' HTTP requests are counted, if anywhere.
    egress_counter: Option<Arc<dyn egress::EgressCounter>>,
    /// Where the plugins' log lines dropped over the rate limit are counted, if anywhere.
    log_counter: Option<Arc<dyn LogCounter>>,
}

impl Runtime {
    /// Creates the engine (async, epoch interruption, the compile cache `cache` names) and
    /// links WASI and the host imports. A cache that cannot be used is a warning, not an error.
    pub fn new(cache: &CacheSetting) -> anyhow::Result<Self> {
        let mut config = EngineConfig::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let cache = CompileCache::open(cache);
        config.cache(cache.as_ref().map(CompileCache::wasmtime));
        let engine =
            Engine::new(&config).map_err(|e| anyhow!("cannot create wasmtime engine: {e:#}"))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("cannot link WASI: {e:#}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("cannot link wasi:http: {e:#}"))?;
        bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("cannot link the warren host interface: {e:#}"))?;
        bindings::v0_2::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("cannot link the warren host interface 0.2.0: {e:#}"))?;
        link_delivery_body(&mut linker)
            .map_err(|e| anyhow!("cannot link the warren delivery interface: {e:#}"))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("warren-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("cannot start the epoch thread")?;

        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache,
            compiling: Arc::default(),
            egress_counter: None,
            log_counter: None,
        })
    }

    /// The same runtime, counting the HTTP requests of the plugins it loads from now on in
    /// `counter`.
    pub fn count_egress(self, counter: Arc<dyn egress::EgressCounter>) -> Self {
        Self {
            egress_counter: Some(counter),
            ..self
        }
    }

    /// The same runtime, counting the log lines dropped over [`LOG_LINES_PER_SECOND`] by the
    /// plugins it loads from now on in `counter` (without it, they are only logged).
    pub fn count_dropped_lines(self, counter: Arc<dyn LogCounter>) -> Self {
        Self {
            log_counter: Some(counter),
            ..self
        }
    }

    /// The compile cache in use, if any.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// Reads, compiles, links and initialises one instance of a plugin, off the async threads.
    ///
    /// Fails, naming the file, if the file is missing or not a component, if it needs an
    /// import warren does not provide, or if its `init` refuses the configuration.
    pub async fn load(&self, settings: &PluginSettings) -> anyhow::Result<Arc<Plugin>> {
        self.load_bytes(settings, read(settings).await?).await
    }

    /// Like [`Runtime::load`], with the file's content already read.
    pub async fn load_bytes(
        &self,
        settings: &PluginSettings,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Arc<Plugin>> {
        let plugin = self.linked(settings, bytes).await?;
        // One instance now, so a plugin whose `init` fails is refused before it gets a message.
        plugin.start_one().await?;
        Ok(plugin)
    }

    /// Like [`Runtime::load`], but no instance is made, so `init` has not run:
    /// [`Plugin::with_settings`] makes the instances (`warren plugin test`, one per case).
    pub async fn load_code(&self, settings: &PluginSettings) -> anyhow::Result<Arc<Plugin>> {
        self.linked(settings, read(settings).await?).await
    }

    /// Compiles (off the async threads) and links a plugin: no instance yet.
    async fn linked(
        &self,
        settings: &PluginSettings,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Arc<Plugin>> {
        let path = settings.path.clone();
        let version = content_hash(&bytes);
        let runtime = self.clone();
        let (component, compilation) = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .context("plugin compilation panicked")?
            .map_err(|e| {
                anyhow!(
                    "plugin {}: {} is not a valid WebAssembly component: {e:#}",
                    settings.name,
                    path.display()
                )
            })?;
        self.link(settings, component, version, compilation)
    }

    /// Compiles a component, or takes it from the compile cache, and says which (blocking).
    fn compile(&self, bytes: &[u8]) -> wasmtime::Result<(Component, Compilation)> {
        let _one_at_a_time = self
            .compiling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let hits = || self.cache.as_ref().map_or(0, |cache| cache.counts().0);
        let before = hits();
        let result = Component::new(&self.engine, bytes);
        let source = if hits() > before {
            Source::Cached
        } else {
            Source::Compiled
        };
        let (component, source) = match (result, &self.cache) {
            (Ok(component), _) => (component, source),
            // An entry wasmtime accepted (it decoded, and its header matched the engine) but
            // that does not load: never trusted again. Which file it was is not known, so the
            // whole cache goes; then the component is compiled from its bytes.
            (Err(e), Some(cache)) if source == Source::Cached => {
                tracing::warn!(
                    dir = %cache.dir().display(),
                    error = %format!("{e:#}"),
                    "a compile cache entry does not load; clearing the cache and compiling"
                );
                cache.clear();
                (Component::new(&self.engine, bytes)?, Source::Compiled)
            }
            (Err(e), _) => return Err(e),
        };
        let took = started.elapsed();
        Ok((component, Compilation { source, took }))
    }

    /// Checks the contract and links the component: a plugin with no instance yet.
    fn link(
        &self,
        settings: &PluginSettings,
        component: Component,
        version: String,
        compilation: Compilation,
    ) -> anyhow::Result<Arc<Plugin>> {
        let path = settings.path.display();
        let name = &settings.name;
        let contract =
            check_contract(&component).with_context(|| format!("plugin {name}: {path}"))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("plugin {name}: {path} cannot be linked: {e:#}"))?;
        let pre = match contract {
            Contract::Current => bindings::PluginPre::new(pre).map(Pre::Current),
            Contract::V0_2 => bindings::v0_2::PluginPre::new(pre).map(Pre::V0_2),
        }
        .map_err(|e| anyhow!("plugin {name}: {path} does not export the warren handler: {e:#}"))?;
        Ok(Arc::new(Plugin::new(
            settings,
            version,
            compilation,
            self.engine.clone(),
            pre,
            self.egress_counter.clone(),
            self.log_counter
                .as_ref()
                .map_or_else(Counter::default, |counter| counter.dropped_lines(name)),
        )))
    }
}

/// Links `delivery.body` in place of the one `bindgen!` links: the same function, returning the
/// body as [`bytes::Bytes`] shared with the lent message, so that the host does not copy it
/// before it is copied into the guest (`bindgen!` imports return owned `Vec`s).
fn link_delivery_body(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let interface = format!(
        "{}/delivery@{}",
        bindings::CONTRACT_PACKAGE,
        bindings::CONTRACT_VERSION
    );
    linker.allow_shadowing(true);
    let linked = linker.instance(&interface).and_then(|mut instance| {
        instance.func_wrap(
            "[method]delivery.body",
            |mut store: wasmtime::StoreContextMut<'_, HostState>,
             (_,): (wasmtime::component::Resource<bindings::Delivery>,)| {
                Ok((store.data_mut().lent_body(),))
            },
        )
    });
    linker.allow_shadowing(false);
    linked
}

/// A component linked and ready to instantiate, by the contract version it was built for.
#[derive(Clone)]
enum Pre {
    /// The current contract.
    Current(bindings::PluginPre<HostState>),
    /// Contract 0.2.0.
    V0_2(bindings::v0_2::PluginPre<HostState>),
}

/// One loaded version of a plugin, with its pool of ready instances.
pub struct Plugin {
    name: Arc<str>,
    version: String,
    path: std::path::PathBuf,
    loaded_at: SystemTime,
    compilation: Compilation,
    engine: Engine,
    pre: Pre,
    config: spec::PluginConfig,
    limits: Limits,
    /// The `wasi:http` hooks each instance gets a copy of.
    egress: egress::EgressHooks,
    publish: PublishRules,
    log: Arc<log::LogLimiter>,
    pool: pool::Pool<invoke::Instance>,
}

impl Plugin {
    fn new(
        settings: &PluginSettings,
        version: String,
        compilation: Compilation,
        engine: Engine,
        pre: Pre,
        egress_counter: Option<Arc<dyn egress::EgressCounter>>,
        dropped_lines: Counter,
    ) -> Self {
        let name: Arc<str> = Arc::from(settings.name.as_str());
        let egress = egress::EgressHooks::new(settings.egress().clone(), name.clone())
            .counted(egress_counter);
        let log = Arc::new(log::LogLimiter::new(name.clone(), dropped_lines));
        Plugin {
            name,
            version,
            path: settings.path.clone(),
            loaded_at: SystemTime::now(),
            compilation,
            engine,
            pre,
            config: settings.config.clone(),
            limits: settings.limits.clone(),
            egress,
            publish: settings.publish.clone(),
            log,
            pool: pool::Pool::new(settings.limits.max_instances.map(NonZeroUsize::get)),
        }
    }

    /// Makes one instance and keeps it for the first message: fails if `init` does.
    async fn start_one(&self) -> anyhow::Result<()> {
        let instance = self
            .instantiate()
            .await
            .with_context(|| format!("plugin {}: {}", self.name, self.path.display()))?;
        self.pool.add(instance);
        Ok(())
    }

    /// The same code with other settings (config, limits, hosts), with one fresh instance
    /// `init`ed with them: it fails as loading would, if `init` refuses that config.
    pub async fn with_settings(&self, settings: &PluginSettings) -> anyhow::Result<Arc<Plugin>> {
        let plugin = Arc::new(Plugin::new(
            settings,
            self.version.clone(),
            self.compilation,
            self.engine.clone(),
            self.pre.clone(),
            self.egress.counter(),
            self.log.dropped_total(),
        ));
        plugin.start_one().await?;
        Ok(plugin)
    }

    /// The plugin's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version identity: the first 12 hex digits of the file's SHA-256.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When it was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Whether its code was compiled or came from the compile cache, and how long that took.
    pub fn compilation(&self) -> Compilation {
        self.compilation
    }

    /// Its `config` and `secret_config` (whose values are never to be shown).
    pub fn config(&self) -> &spec::PluginConfig {
        &self.config
    }

    /// Its sandbox limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Where and how much it may publish.
    pub fn publish_rules(&self) -> &PublishRules {
        &self.publish
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The plugin file's bytes.
async fn read(settings: &PluginSettings) -> anyhow::Result<Vec<u8>> {
    let path = &settings.path;
    tokio::fs::read(path)
        .await
        .with_context(|| format!("plugin {}: cannot read {}", settings.name, path.display()))
}

/// A plugin's version identity: the first 12 hex digits of the SHA-256 of its file.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
