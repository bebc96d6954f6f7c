//! The `warren` command: parse the command line, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use warren::config::{BrokerSettings, BrokerUrl, Config, DEFAULT_BROKER_URL, DEFAULT_CONFIG_PATH};
use warren::produce::{self, Target};
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
    Publish {
        /// Broker URL; defaults to [broker] url of --config, else the local broker.
        #[arg(long, env = "WARREN_BROKER_URL", hide_env_values = true)]
        url: Option<String>,
        /// Take the broker URL from this configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exchange to publish to (default: the default exchange).
        #[arg(long, short, default_value = "")]
        exchange: String,
        /// Routing key.
        #[arg(long, short, conflicts_with = "queue")]
        routing_key: Option<String>,
        /// Publish straight to this queue (the default exchange with the queue as routing key).
        #[arg(long, short)]
        queue: Option<String>,
        /// Message priority (the queue needs max_priority).
        #[arg(long, short)]
        priority: Option<u8>,
        /// Publish transient messages instead of persistent ones.
        #[arg(long)]
        transient: bool,
        /// reply-to property.
        #[arg(long)]
        reply_to: Option<String>,
        /// correlation-id property.
        #[arg(long)]
        correlation_id: Option<String>,
        /// content-type property.
        #[arg(long)]
        content_type: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin on one message and print its verdict and publishes as JSON.
    Run(PluginRun),
}

#[derive(Debug, clap::Args)]
struct PluginRun {
    /// The plugin's .wasm component.
    file: PathBuf,
    /// The message body; read from standard input when absent.
    #[arg(long, short)]
    body: Option<String>,
    /// A plugin config entry, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = key_value)]
    config: Vec<(String, String)>,
    /// A message header, KEY=VALUE, as text (repeatable).
    #[arg(long = "header", short = 'H', value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Message priority.
    #[arg(long)]
    priority: Option<u8>,
    /// reply-to property.
    #[arg(long)]
    reply_to: Option<String>,
    /// correlation-id property.
    #[arg(long)]
    correlation_id: Option<String>,
    /// message-id property.
    #[arg(long)]
    message_id: Option<String>,
    /// content-type property.
    #[arg(long)]
    content_type: Option<String>,
    /// Mark the message as redelivered.
    #[arg(long)]
    redelivered: bool,
    /// The broker's delivery count (as on quorum queues).
    #[arg(long)]
    delivery_count: Option<u32>,
    /// Exchange the message came through.
    #[arg(long, default_value = "")]
    exchange: String,
    /// Routing key (default: the queue).
    #[arg(long)]
    routing_key: Option<String>,
    /// Queue the message came from.
    #[arg(long, default_value = "local")]
    queue: String,
    /// A host the plugin may reach over HTTP (repeatable), as in allowed_hosts.
    #[arg(long = "allow-host")]
    allowed_hosts: Vec<String>,
    /// Wall-clock limit of handle, in ms.
    #[arg(long, default_value_t = warren::plugin::spec::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
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
        Command::Plugin(PluginCommand::Run(args)) => plugin_run(args).await,
        Command::Check { config } => {
            let config = Config::load(&config)?;
            print!("{}", warren::check::check(&config).await?);
            Ok(())
        }
        Command::Publish {
            url,
            config,
            exchange,
            routing_key,
            queue,
            priority,
            transient,
            reply_to,
            correlation_id,
            content_type,
        } => {
            let broker = match (url, config) {
                (Some(url), _) => BrokerSettings {
                    urls: vec![BrokerUrl::parse(&url).map_err(|e| anyhow::anyhow!("--url: {e}"))?],
                    connection_name: "warren-publish".into(),
                },
                (None, Some(path)) => Config::load(&path)?.broker,
                (None, None) => BrokerSettings {
                    urls: vec![BrokerUrl::parse(DEFAULT_BROKER_URL).map_err(anyhow::Error::msg)?],
                    connection_name: "warren-publish".into(),
                },
            };
            let (exchange, routing_key) = match (queue, routing_key) {
                (Some(queue), _) => (String::new(), queue),
                (None, Some(key)) => (exchange, key),
                (None, None) if !exchange.is_empty() => (exchange, String::new()),
                (None, None) => anyhow::bail!(
                    "say where to publish: --queue NAME, or --exchange NAME with --routing-key KEY"
                ),
            };
            let mut target = Target::new(exchange, routing_key);
            target.properties.priority = priority;
            target.properties.reply_to = reply_to;
            target.properties.correlation_id = correlation_id;
            target.properties.content_type = content_type;
            if transient {
                target.properties.delivery_mode = Some(1);
            }
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let count = produce::publish_lines(&broker, &target, stdin)
                .await
                .context("warren publish")?;
            eprintln!("published {count} messages (confirmed by the broker)");
            Ok(())
        }
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
async fn plugin_run(args: PluginRun) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    use warren::message::{Message, empty_properties, text_header};

    let body = match args.body {
        Some(body) => body.into_bytes(),
        None => {
            let mut body = Vec::new();
            tokio::io::stdin().read_to_end(&mut body).await?;
            body
        }
    };
    let mut properties = empty_properties();
    properties.headers = args
        .headers
        .into_iter()
        .map(|(key, value)| text_header(&key, &value))
        .collect();
    properties.priority = args.priority;
    properties.reply_to = args.reply_to;
    properties.correlation_id = args.correlation_id;
    properties.message_id = args.message_id;
    properties.content_type = args.content_type;
    let message = Message {
        body,
        exchange: args.exchange,
        routing_key: args.routing_key.unwrap_or_else(|| args.queue.clone()),
        queue: args.queue,
        redelivered: args.redelivered,
        delivery_count: args.delivery_count,
        properties,
    };
    let limits = warren::plugin::spec::Limits {
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        ..Default::default()
    };
    let trial = warren::try_plugin::Trial {
        path: args.file,
        config: args.config,
        allowed_hosts: args.allowed_hosts,
        http: Default::default(),
        limits,
    };
    let report = warren::try_plugin::run(trial, message).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
