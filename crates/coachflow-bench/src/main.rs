//! `coachflow-bench`: how fast and how big Coachflow is on this machine, measured against
//! the limit of the database it runs on. Every scenario starts the real `coachflow serve`
//! binary (release build) on a fresh database, and drives it over gRPC as L&D systems do.
//! See `BENCHMARKS.md` for the scenarios, how to run them and the figures.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use coachflow_bench::{pgbench, scenarios, stats};

#[derive(Debug, Parser)]
#[command(
    name = "coachflow-bench",
    about = "Load generator and benchmarks of Coachflow",
    version
)]
struct Cli {
    /// How often each measurement is repeated (the tables show every run and the median).
    #[arg(long, default_value_t = 3, global = true)]
    runs: usize,
    /// The database of the server under test.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both, global = true)]
    backend: BackendChoice,
    /// An extra server setting, `PATH=VALUE` (as `coachflow serve --set`); repeatable.
    #[arg(long = "server-set", value_name = "PATH=VALUE", global = true)]
    server_set: Vec<String>,
    /// Without authentication: the server in local mode, calls without tokens (the
    /// default verifies a token on every call, as production does).
    #[arg(long, global = true)]
    no_auth: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Postgres,
    Sqlite,
    Both,
}

impl BackendChoice {
    fn backends(self) -> Vec<coachflow_integration_tests::Backend> {
        use coachflow_integration_tests::Backend;
        match self {
            BackendChoice::Postgres => vec![Backend::Postgres],
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Both => vec![Backend::Postgres, Backend::Sqlite],
        }
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// (a) Engagements driven to COMPLETED at each concurrency, with RabbitMQ relaying their
    /// events, beside pgbench's single-row-insert rate at the same concurrency.
    Throughput {
        #[arg(long, default_value_t = 10_000)]
        engagements: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// A model of the bench's own (four-by-three: 4 phases x 3 parallel tasks, the shape
        /// engines are compared on; ten-timers), a built-in model's key (models/{key}.yaml)
        /// or the path of a model file.
        #[arg(long, default_value = "four-stage")]
        model: String,
        #[arg(long, default_value_t = 2)]
        stakeholders: usize,
        /// Run without RabbitMQ (no relay, no lag).
        #[arg(long)]
        no_broker: bool,
        /// Seconds of each pgbench run.
        #[arg(long, default_value_t = 10)]
        pgbench_seconds: u64,
    },
    /// (b) Many active engagements and pending timers stored: read latencies and the
    /// server's memory as the store grows.
    Scale {
        #[arg(long, default_value_t = 100_000)]
        engagements: usize,
        /// The model (ten timers per engagement by default).
        #[arg(long, default_value = scenarios::TEN_TIMERS_MODEL)]
        model: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Reads of each kind timed at the end (one at a time).
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Memory and read latency are sampled this many times while the store grows.
        #[arg(long, default_value_t = 5)]
        steps: usize,
    },
    /// (c) Timers due in the same instant: how long until every one has fired.
    Storm {
        #[arg(long, default_value_t = 10_000)]
        timers: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// (d) One long-lived engagement with a long history: GetEngagement latency.
    History {
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        #[arg(long, default_value_t = 2000)]
        samples: usize,
    },
    /// Authentication's cost: the same load with a verified token on every call and in
    /// local mode without tokens, run after run in turn.
    Auth {
        #[arg(long, default_value_t = 200)]
        engagements: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The database's limit alone: pgbench's single-row INSERT rate by concurrency.
    Pgbench {
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("coachflow-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let common = scenarios::Common {
        runs: cli.runs.max(1),
        backends: cli.backend.backends(),
        server_settings: cli
            .server_set
            .iter()
            .map(|setting| {
                setting
                    .split_once('=')
                    .map(|(path, value)| (path.to_owned(), value.to_owned()))
                    .ok_or_else(|| anyhow::anyhow!("--server-set {setting}: expected PATH=VALUE"))
            })
            .collect::<anyhow::Result<_>>()?,
        auth: !cli.no_auth,
    };
    println!("{}", scenarios::machine());
    match cli.scenario {
        Scenario::Throughput {
            engagements,
            concurrency,
            model,
            stakeholders,
            no_broker,
            pgbench_seconds,
        } => {
            scenarios::throughput(
                &common,
                &scenarios::ThroughputSettings {
                    engagements,
                    concurrency,
                    model,
                    stakeholders,
                    broker: !no_broker,
                    pgbench: Duration::from_secs(pgbench_seconds),
                },
            )
            .await
        }
        Scenario::Scale {
            engagements,
            model,
            concurrency,
            samples,
            steps,
        } => scenarios::scale(&common, engagements, &model, concurrency, samples, steps.max(1)).await,
        Scenario::Storm { timers, concurrency } => scenarios::storm(&common, timers, concurrency).await,
        Scenario::History { events, samples } => scenarios::history(&common, events, samples).await,
        Scenario::Auth {
            engagements,
            concurrency,
        } => scenarios::auth(&common, engagements, concurrency).await,
        Scenario::Pgbench { concurrency, seconds } => {
            let mut rows = Vec::new();
            for clients in concurrency {
                let mut runs = Vec::new();
                for _ in 0..common.runs {
                    let run = pgbench::run(clients, Duration::from_secs(seconds)).await?;
                    let mut figures = stats::Figures::default();
                    figures.set("tps", run.tps);
                    figures.set("latency ms", run.latency_ms);
                    runs.push(figures);
                }
                rows.push(stats::table(
                    &format!("pgbench single-row INSERT, C = {clients}"),
                    &runs,
                    "tps",
                ));
            }
            println!("{}", rows.join("\n"));
            Ok(())
        }
    }
}
