//! The `coachflow` command line.

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Work with process-model files (YAML or JSON).
    #[command(subcommand)]
    Model(ModelCommand),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Model(ModelCommand::Validate { files }) => validate(&files),
        Command::Model(ModelCommand::Render { file }) => {
            let model = load(&file)?.map_err(|problems| anyhow::anyhow!("{}: {problems}", file.display()))?;
            print!("{}", coachflow_model::render_mermaid(model.document()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Model(ModelCommand::Schema) => {
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
