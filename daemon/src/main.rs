//! The `warren` command: parse the command line, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use warren::config::{Config, DEFAULT_CONFIG_PATH};

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
    /// Work with one plugin, without a broker.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate the configuration and compile every plugin; print what would run.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Publish each line of standard input as one persistent, confirmed message.
    Publish(warren::produce::PublishArgs),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin on one message and print its verdict and publishes as JSON.
    Run(warren::try_plugin::PluginRunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
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
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let shutdown = CancellationToken::new();
            let daemon = warren::app::Daemon::start(config, shutdown.clone()).await?;
            tokio::spawn(on_signals(shutdown, daemon.reload_handle()));
            daemon.wait().await
        }
        Command::Plugin(PluginCommand::Run(args)) => warren::try_plugin::command(args).await,
        Command::Check { config } => {
            let config = Config::load(&config)?;
            print!("{}", warren::check::check(&config).await?);
            Ok(())
        }
        Command::Publish(args) => warren::produce::command(args).await,
    }
}

/// SIGTERM or SIGINT cancel `shutdown`; SIGHUP asks for a config reload.
async fn on_signals(shutdown: CancellationToken, reload: warren::app::ReloadHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot listen for signals");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT received");
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the config");
                if !reload.reload() {
                    return;
                }
            }
        }
    }
    shutdown.cancel();
}
