//! The `warren` command: parse the command line, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use warren::config::{Config, DEFAULT_CONFIG_PATH};

use warren::exit;
use warren::telemetry::{self, LogFormat};

/// Consume RabbitMQ queues and hand each message to a WebAssembly plugin.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Look at the dead-letter queues, and put their messages back.
    #[command(subcommand)]
    Dlq(warren::dlq::DlqCommand),
    /// Work with one plugin, without a broker.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// The configuration file.
        #[arg(long, short, env = "WARREN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Serve the admin endpoint on this address, whatever [admin] listen says (several
        /// daemons on one host).
        #[arg(long, env = "WARREN_ADMIN_LISTEN")]
        admin_listen: Option<std::net::SocketAddr>,
    },
    /// Validate the configuration and compile every plugin; print what would run.
    Check {
        /// The configuration file.
        #[arg(long, short, env = "WARREN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Publish each line of standard input as one persistent, confirmed message.
    Publish(warren::produce::PublishArgs),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Write a new plugin project (Rust, Python or JavaScript) that builds as it is.
    New(warren::authoring::new::PluginNewArgs),
    /// Run a plugin on one message and print its verdict and publishes as JSON.
    Run(Box<warren::try_plugin::PluginRunArgs>),
    /// Check a plugin against the cases of a TOML file; non-zero if any fails.
    Test(warren::authoring::run::PluginTestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `plugin test` compares the plugin's log lines with its cases instead of printing them.
    let plugin_logs = matches!(cli.command, Command::Plugin(PluginCommand::Test(_)))
        .then(telemetry::PluginLogs::default);
    telemetry::init(cli.log_format, plugin_logs.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, plugin_logs.unwrap_or_default())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// A command that failed, with the exit code that says how (see `warren::exit`).
struct Failed {
    code: u8,
    error: anyhow::Error,
}

impl Failed {
    fn config(error: anyhow::Error) -> Self {
        Self {
            code: exit::CONFIG,
            error,
        }
    }
}

impl From<anyhow::Error> for Failed {
    fn from(error: anyhow::Error) -> Self {
        Self {
            code: exit::FAILURE,
            error,
        }
    }
}

async fn execute(command: Command, plugin_logs: telemetry::PluginLogs) -> Result<(), Failed> {
    match command {
        Command::Run {
            config,
            admin_listen,
        } => {
            let mut config = Config::load(&config).map_err(Failed::config)?;
            if let Some(listen) = admin_listen {
                let token = config.admin.take().and_then(|admin| admin.token);
                config.admin = Some(warren::config::AdminSettings { listen, token });
            }
            // Signals are heard from here on: a SIGTERM while the broker is being retried
            // ends warren cleanly, a SIGHUP during start-up is applied once it runs.
            let shutdown = CancellationToken::new();
            let (reload, reloads) = warren::app::reload_channel();
            let signals = Signals::install().map_err(Failed::from)?;
            tokio::spawn(signals.forward(shutdown.clone(), reload.clone()));
            let started =
                warren::app::Daemon::start_with(config, shutdown, (reload, reloads)).await;
            let daemon = match started {
                Ok(daemon) => daemon,
                Err(warren::app::StartError::Stopped(e)) => {
                    tracing::info!("{e:#}");
                    return Ok(());
                }
                Err(e) => {
                    return Err(Failed {
                        code: e.exit_code(),
                        error: e.into(),
                    });
                }
            };
            Ok(daemon.wait().await?)
        }
        Command::Plugin(PluginCommand::Run(args)) => Ok(warren::try_plugin::command(*args).await?),
        Command::Plugin(PluginCommand::New(args)) => Ok(warren::authoring::new::command(args)?),
        Command::Plugin(PluginCommand::Test(args)) => {
            let tally = warren::authoring::run::command(args, plugin_logs).await?;
            if tally.failed > 0 {
                return Err(anyhow::anyhow!(
                    "{} of {} cases failed",
                    tally.failed,
                    tally.failed + tally.passed
                )
                .into());
            }
            Ok(())
        }
        Command::Check { config } => {
            let config = Config::load(&config).map_err(Failed::config)?;
            let summary = warren::check::check(&config)
                .await
                .map_err(Failed::config)?;
            print!("{summary}");
            Ok(())
        }
        Command::Publish(args) => Ok(warren::produce::command(args).await?),
        Command::Dlq(command) => Ok(warren::dlq::command(command).await?),
    }
}

/// The signals warren acts on, listened to from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| anyhow::anyhow!("cannot listen for {name}: {e}"))
        };
        Ok(Self {
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            hup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// SIGTERM or SIGINT cancel `shutdown`; SIGHUP asks for a config reload.
    async fn forward(mut self, shutdown: CancellationToken, reload: warren::app::ReloadHandle) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM received");
                    break;
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT received");
                    break;
                }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the config");
                    if !reload.reload() {
                        return;
                    }
                }
            }
        }
        shutdown.cancel();
    }
}
