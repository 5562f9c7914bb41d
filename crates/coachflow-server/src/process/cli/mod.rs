//! The `coachflow` command line: `serve`, `migrate`, `model ...`, `token` and `client ...`.

mod client;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::process::config::{Config, Overrides, Settings};
use crate::process::{serve, telemetry};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Coachflow runs executive-coaching engagements as configurable process models.
#[derive(Debug, Parser)]
#[command(name = "coachflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the service: gRPC, the timer runner and the metrics endpoint. Configuration comes
    /// in layers: defaults, the file, COACHFLOW_* variables, then these flags.
    Serve(ServeArgs),
    /// Brings the database schema up to date, then exits.
    Migrate(ConfigArgs),
    /// Work with process-model files (YAML or JSON).
    #[command(subcommand)]
    Model(ModelCommand),
    /// Talks to a running service over gRPC: publish models, start and drive engagements.
    Client(client::ClientArgs),
    /// Mints a token for a server in local mode (no auth.issuer), signed with the key it
    /// keeps beside its database: to try the service as a person or a system.
    Token(token::TokenArgs),
    /// Key-encryption keys of content at rest (`content.kek`).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Prints a new random key-encryption key (base64 of 32 bytes): put it first in
    /// content.kek, keep the old ones after it until the server says every data key is
    /// rewrapped.
    Generate,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// A YAML configuration file.
    #[arg(long, env = "COACHFLOW_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database: sqlite://FILE (the default is sqlite://coachflow.db) or postgres://...
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Any setting by its dotted path, e.g. --set timers.poll_interval=250ms (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address for gRPC (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Address for the Prometheus endpoint; empty turns it off.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Log format: human or json.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(path, value)| (path.trim().to_owned(), value.to_owned()))
        .ok_or_else(|| format!("'{text}' is not PATH=VALUE"))
}

impl ConfigArgs {
    pub(crate) fn settings(&self, mut overrides: Overrides) -> anyhow::Result<Settings> {
        if let Some(url) = &self.database_url {
            overrides.insert(0, ("database.url".to_owned(), url.clone()));
        }
        overrides.extend(self.settings.iter().cloned());
        let config = Config::load(self.config.as_deref(), std::env::vars(), &overrides)?;
        Ok(config.validate()?)
    }
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Checks model files; prints every problem with its path. Exit code 1 if any is invalid.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Prints a Mermaid flowchart of a model's phases, tasks, gates and transitions.
    Render {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Prints the JSON Schema of the model format.
    Schema,
    /// What changed from one version of a model to another, and what each change asks of a
    /// migration of running engagements. Exit code 0 when they can move without a mapping,
    /// 1 when not.
    Diff {
        #[arg(value_name = "OLD")]
        old: PathBuf,
        #[arg(value_name = "NEW")]
        new: PathBuf,
    },
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::Model(command) => run(command),
        Command::Client(args) => client::run(args),
        Command::Token(args) => token::run(&args),
        Command::Keys(KeysCommand::Generate) => coachflow_store::generate_kek()
            .map(|key| {
                println!("{key}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut overrides = Overrides::new();
    if let Some(listen) = args.listen {
        overrides.push(("grpc.listen".to_owned(), listen));
    }
    if let Some(listen) = args.metrics_listen {
        overrides.push(("metrics.listen".to_owned(), listen));
    }
    if let Some(format) = args.log_format {
        overrides.push(("log.format".to_owned(), format));
    }
    let settings = args.config.settings(overrides)?;
    let runtime = runtime()?;
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(&settings.config.log, settings.otlp_endpoint.as_deref())?
    };
    let served = runtime.block_on(serve::serve(settings, |bound| {
        // One line on stdout tells scripts and tests where the service listens.
        let metrics = bound
            .metrics
            .map_or_else(|| "off".to_owned(), |address| address.to_string());
        println!("coachflow ready grpc={} metrics={metrics}", bound.grpc);
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }));
    telemetry.shutdown();
    served?;
    Ok(ExitCode::SUCCESS)
}

fn migrate(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings(Overrides::new())?;
    telemetry::init(&settings.config.log, None)?;
    runtime()?.block_on(async {
        let store = serve::open_store(&settings, true).await?;
        store.close().await?;
        println!(
            "database {} is up to date",
            serve::redact(&settings.config.database.url)
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Validate { files } => validate(&files),
        ModelCommand::Render { file } => {
            let model = load(&file)?.map_err(|problems| anyhow::anyhow!("{}: {problems}", file.display()))?;
            print!("{}", coachflow_model::render_mermaid(model.document()));
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Diff { old, new } => {
            let read =
                |file: &PathBuf| load(file)?.map_err(|problems| anyhow::anyhow!("{}: {problems}", file.display()));
            let diff = coachflow_model::diff(&read(&old)?, &read(&new)?);
            for change in &diff.changes {
                println!("{change}");
            }
            if diff.compatible() {
                println!(
                    "compatible: engagements of {} can move to {} without a mapping",
                    old.display(),
                    new.display()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("not compatible: a migration needs a mapping (or cannot move some engagements)");
                Ok(ExitCode::FAILURE)
            }
        }
        ModelCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&coachflow_model::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(file: &PathBuf) -> anyhow::Result<Result<coachflow_model::Model, coachflow_model::Problems>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(coachflow_model::Model::from_text(&text))
}

fn validate(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut all_valid = true;
    for file in files {
        match load(file) {
            Ok(Ok(model)) => {
                let document = model.document();
                println!(
                    "{}: ok ({} '{}': {} phases, {} tasks)",
                    file.display(),
                    document.metadata.key,
                    document.metadata.name,
                    model.phases().len(),
                    model.tasks().len()
                );
                for warning in model.warnings() {
                    println!("  warning: {warning}");
                }
            }
            Ok(Err(problems)) => {
                all_valid = false;
                println!("{}: {} problem(s)", file.display(), problems.0.len());
                for problem in &problems.0 {
                    println!("  {problem}");
                }
            }
            Err(error) => {
                all_valid = false;
                println!("{}: {error:#}", file.display());
            }
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
