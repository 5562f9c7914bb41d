//! The scenarios: each prints a Markdown table per measurement, one row per run and the
//! median row.

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use coachflow_integration_tests::amqp::{TestExchange, amqp_url};
use coachflow_integration_tests::client::{SERVICE_ACTOR, builtin_source, parent};
use coachflow_integration_tests::{Backend, TestServer, engagement_name, history, parse_model};
use coachflow_server::proto::{self, engagement_service_client::EngagementServiceClient};
use tonic::transport::{Channel, Endpoint};

use crate::lag::{self, LagConsumer};
use crate::load::{self, LoadSettings};
use crate::pgbench;
use crate::stats::{Figures, Latencies, rows, table};

/// The model of scenario b: ten timers per engagement.
pub const TEN_TIMERS_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/ten-timers.yaml");
/// The bench's own models.
const BENCH_MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models");

/// Settings every scenario shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub runs: usize,
    pub backends: Vec<Backend>,
    /// Extra `--set PATH=VALUE` for the server.
    pub server_settings: Vec<(String, String)>,
    /// Every call carries a token the server verifies (as in production); off: local mode.
    pub auth: bool,
}

impl Common {
    async fn server(&self, backend: Backend, extra: &[(&str, &str)]) -> TestServer {
        let mut builder = TestServer::builder(backend);
        if !self.auth {
            builder = builder.local_mode();
        }
        for (path, value) in extra {
            builder = builder.set(path, value);
        }
        for (path, value) in &self.server_settings {
            builder = builder.set(path, value);
        }
        builder.start().await
    }
}

/// A model of the bench's own (`crates/coachflow-bench/models/{key}.yaml`: `four-by-three`,
/// `ten-timers`), a built-in model's key (`models/{key}.yaml`) or a model file's path: its
/// text.
fn model_source(model: &str) -> anyhow::Result<String> {
    if model.contains('/') || model.ends_with(".yaml") || model.ends_with(".json") {
        return std::fs::read_to_string(model).with_context(|| format!("cannot read the model {model}"));
    }
    let own = std::path::Path::new(BENCH_MODELS).join(format!("{model}.yaml"));
    if own.exists() {
        return std::fs::read_to_string(&own).with_context(|| format!("cannot read {}", own.display()));
    }
    Ok(builtin_source(model))
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
    }
}

/// The machine, for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or_else(|| "? GiB".to_owned(), |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0));
    let postgres = std::process::Command::new("psql")
        .args(["--version"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("machine: {cpu}, {cores} cores, {memory}; {postgres}")
}

/// The server's resident memory in MiB (now, and its peak).
fn rss_mib(server: &TestServer) -> (f64, f64) {
    let Some(pid) = server.pid() else {
        return (f64::NAN, f64::NAN);
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server's count of fired timers (NaN without a readable metrics endpoint).
async fn fired_timers(server: &TestServer) -> f64 {
    match server.metrics_address() {
        Some(address) => load::fired_timers_at(address).await.unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

async fn client(server: &TestServer) -> anyhow::Result<EngagementServiceClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{}", server.grpc_address()))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(EngagementServiceClient::new(channel))
}

/// Measures `common.runs` times on each backend (`measure` starts its own server) and
/// prints a table per backend: every run and the median.
async fn each_run(
    common: &Common,
    label: &str,
    by: &str,
    title: impl Fn(Backend) -> String,
    mut measure: impl AsyncFnMut(Backend) -> anyhow::Result<Figures>,
) -> anyhow::Result<()> {
    for &backend in &common.backends {
        let mut runs = Vec::new();
        for run in 1..=common.runs {
            eprintln!("{label}: {} run {run}/{}", backend_name(backend), common.runs);
            let figures = measure(backend).await?;
            eprintln!("  {figures:?}");
            runs.push(figures);
        }
        println!("{}", table(&title(backend), &runs, by));
    }
    Ok(())
}

// ----- (a) throughput ----------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ThroughputSettings {
    pub engagements: usize,
    pub concurrency: Vec<usize>,
    pub model: String,
    pub stakeholders: usize,
    pub broker: bool,
    pub pgbench: Duration,
}

pub async fn throughput(common: &Common, settings: &ThroughputSettings) -> anyhow::Result<()> {
    let source = model_source(&settings.model)?;
    let model = parse_model(&source);
    for &backend in &common.backends {
        for &concurrency in &settings.concurrency {
            let mut runs = Vec::new();
            for run in 1..=common.runs {
                eprintln!(
                    "throughput: {} C={concurrency} run {run}/{}: {} engagements of {}",
                    backend_name(backend),
                    common.runs,
                    settings.engagements,
                    model.key()
                );
                let figures = throughput_run(common, settings, &source, backend, concurrency).await?;
                eprintln!("  {figures:?}");
                runs.push(figures);
            }
            println!(
                "{}",
                table(
                    &format!(
                        "(a) {} engagements of {} on {}{}, C = {concurrency}",
                        settings.engagements,
                        model.key(),
                        backend_name(backend),
                        if settings.broker { " + RabbitMQ" } else { "" }
                    ),
                    &runs,
                    "completions/s"
                )
            );
        }
    }
    Ok(())
}

async fn throughput_run(
    common: &Common,
    settings: &ThroughputSettings,
    source: &str,
    backend: Backend,
    concurrency: usize,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    // The limit first, on the same PostgreSQL, at the same concurrency.
    let pgbench = pgbench::run(concurrency, settings.pgbench).await?;

    let exchange = settings.broker.then(|| TestExchange::on(&amqp_url(), "bench"));
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(exchange) = &exchange {
        extra.push(("broker.url", exchange.url()));
        extra.push(("broker.exchange", exchange.name()));
    }
    let mut server = common.server(backend, &extra).await;
    let published = server.publish(source).await;
    let id_prefix = "e";
    let consumer = match &exchange {
        Some(exchange) => {
            declare(exchange).await?;
            Some(LagConsumer::start(exchange.url(), exchange.name(), id_prefix).await?)
        }
        None => None,
    };
    let (stop_reading, stopped) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(reads_under_load(
        client(&server).await?,
        load::Tokens::for_server(&server),
        id_prefix,
        settings.engagements,
        stopped,
    ));
    let report = load::run(
        &server,
        parse_model(source),
        &published,
        LoadSettings {
            engagements: settings.engagements,
            concurrency,
            stakeholders: settings.stakeholders,
            id_prefix: id_prefix.to_owned(),
            start_only: false,
            keep_acks: consumer.is_some(),
        },
    )
    .await?;
    let ended = Instant::now();
    stop_reading.send_replace(true);
    let (reads_get, reads_list) = reader.await??;
    let (rss, peak) = rss_mib(&server);
    let timers = fired_timers(&server).await;
    let wall = report.wall.as_secs_f64();
    let all = report.all_commands();
    let completions = report.completions() as f64;
    figures.set("done", report.finished as f64);
    figures.set("failed", report.failed as f64);
    figures.set("commands", report.command_count() as f64);
    figures.set("timers fired", timers);
    figures.set("wall s", wall);
    figures.set("commands/s", report.command_count() as f64 / wall);
    figures.set("completions/s", completions / wall);
    figures.set("pgbench tps", pgbench.tps);
    figures.set("completions ÷ pgbench", completions / wall / pgbench.tps);
    figures.set(
        "commits ÷ pgbench",
        (report.command_count() as f64 + timers) / wall / pgbench.tps,
    );
    let commits = match server.metrics_address() {
        Some(address) => load::commit_figures_at(address).await,
        None => None,
    };
    figures.set("cmds/txn", commits.map_or(f64::NAN, |commits| commits.per_transaction));
    figures.set("txn ms", commits.map_or(f64::NAN, |commits| commits.batch_ms));
    figures.set("txn wait ms", commits.map_or(f64::NAN, |commits| commits.wait_ms));
    figures.set("cmd p50 ms", all.percentile_ms(50.0));
    figures.set("cmd p99 ms", all.percentile_ms(99.0));
    figures.set("cmd max ms", all.max_ms());
    if let Some(complete) = report.commands.get("CompleteTask") {
        figures.set("complete p99 ms", complete.percentile_ms(99.0));
    }
    figures.set("get p50 ms", reads_get.percentile_ms(50.0));
    figures.set("get p99 ms", reads_get.percentile_ms(99.0));
    figures.set("list p99 ms", reads_list.percentile_ms(99.0));
    figures.set("errors", report.errors.values().sum::<u64>() as f64);
    for (error, count) in &report.errors {
        eprintln!("  error ×{count}: {error}");
    }
    if let Some(consumer) = consumer {
        let receipts = consumer
            .finish(Duration::from_secs(3), Duration::from_secs(300))
            .await?;
        let (lags, early) = lag::lags(&report.acks, &receipts);
        figures.set("events received", receipts.messages as f64);
        figures.set("duplicates", receipts.duplicates as f64);
        figures.set("lag p50 ms", lags.percentile_ms(50.0));
        figures.set("lag p99 ms", lags.percentile_ms(99.0));
        figures.set("before reply", early as f64);
        if let Some(last) = receipts.last {
            // How long after the last reply the last event arrived.
            figures.set("relay tail s", last.saturating_duration_since(ended).as_secs_f64());
        }
    }
    figures.set("server RSS MiB", rss);
    figures.set("peak RSS MiB", peak);
    server.terminate(Duration::from_secs(60)).await;
    if let Some(exchange) = exchange {
        exchange.cleanup().await;
    }
    Ok(figures)
}

/// Declares the run's exchange before the consumer binds to it (the server declares it
/// too, the same way).
async fn declare(exchange: &TestExchange) -> anyhow::Result<()> {
    let connection = coachflow_integration_tests::amqp::connect(exchange.url(), "coachflow-bench setup").await;
    let channel = connection.create_channel().await?;
    coachflow_integration_tests::amqp::declare_exchange(&channel, exchange.name()).await;
    let _ = connection.close(200, "declared".into()).await;
    Ok(())
}

// ----- authentication's cost ------------------------------------------------------------

/// The same load with authentication on (every call's token verified) and off (local mode),
/// run after run in turn, so both see the same machine: command latency and rate.
pub async fn auth(common: &Common, engagements: usize, concurrency: usize) -> anyhow::Result<()> {
    let source = builtin_source("four-stage");
    for &backend in &common.backends {
        let mut on = Vec::new();
        let mut off = Vec::new();
        for run in 1..=common.runs {
            for auth in [true, false] {
                eprintln!(
                    "auth {}: {} run {run}/{}: {engagements} engagements, C={concurrency}",
                    if auth { "on" } else { "off" },
                    backend_name(backend),
                    common.runs
                );
                let common = Common { auth, ..common.clone() };
                let mut server = common.server(backend, &[]).await;
                let published = server.publish(&source).await;
                let report = load::run(
                    &server,
                    parse_model(&source),
                    &published,
                    LoadSettings {
                        engagements,
                        concurrency,
                        stakeholders: 2,
                        id_prefix: "a".to_owned(),
                        start_only: false,
                        keep_acks: false,
                    },
                )
                .await?;
                let all = report.all_commands();
                let mut figures = Figures::default();
                figures.set("commands", report.command_count() as f64);
                figures.set("commands/s", report.command_count() as f64 / report.wall.as_secs_f64());
                figures.set("cmd p50 ms", all.percentile_ms(50.0));
                figures.set("cmd p99 ms", all.percentile_ms(99.0));
                figures.set("errors", report.errors.values().sum::<u64>() as f64);
                eprintln!("  {figures:?}");
                for (error, count) in &report.errors {
                    eprintln!("  error ×{count}: {error}");
                }
                server.terminate(Duration::from_secs(60)).await;
                if auth { on.push(figures) } else { off.push(figures) }
            }
        }
        let title = |what: &str| {
            format!(
                "authentication {what}: {engagements} four-stage engagements on {}, C = {concurrency}",
                backend_name(backend)
            )
        };
        println!(
            "{}",
            table(&title("on (a verified token on every call)"), &on, "commands/s")
        );
        println!("{}", table(&title("off (local mode, no token)"), &off, "commands/s"));
        let median = |runs: &[Figures], column: &str| {
            crate::stats::median(&runs.iter().map(|run| run.get(column)).collect::<Vec<_>>())
        };
        for column in ["cmd p50 ms", "cmd p99 ms", "commands/s"] {
            println!(
                "- {column}: on ÷ off = {:.3} (medians {:.2} and {:.2})",
                median(&on, column) / median(&off, column),
                median(&on, column),
                median(&off, column)
            );
        }
        println!();
    }
    Ok(())
}

// ----- (b) scale ---------------------------------------------------------------------------

pub async fn scale(
    common: &Common,
    engagements: usize,
    model: &str,
    concurrency: usize,
    samples: usize,
    steps: usize,
) -> anyhow::Result<()> {
    let source = model_source(model)?;
    for &backend in &common.backends {
        let mut runs = Vec::new();
        let mut growth = Vec::new();
        for run in 1..=common.runs {
            eprintln!(
                "scale: {} run {run}/{}: {engagements} engagements",
                backend_name(backend),
                common.runs
            );
            let mut server = common.server(backend, &[]).await;
            let published = server.publish(&source).await;
            // Counts the stored timers (the server's gauge is refreshed only now and then).
            let store =
                coachflow_store::Store::connect(server.database().url(), coachflow_store::StoreOptions::default())
                    .await
                    .context("cannot open the server's database")?;
            let per_step = engagements.div_ceil(steps);
            let mut created = 0;
            let mut step = 0;
            let started = Instant::now();
            let mut rng = Lcg::new(run as u64);
            while created < engagements {
                let count = per_step.min(engagements - created);
                let report = load::run(
                    &server,
                    parse_model(&source),
                    &published,
                    LoadSettings {
                        engagements: count,
                        concurrency,
                        stakeholders: 2,
                        id_prefix: format!("s{step}-"),
                        start_only: true,
                        keep_acks: false,
                    },
                )
                .await?;
                if report.failed > 0 {
                    bail!("{} engagements failed to start: {:?}", report.failed, report.errors);
                }
                created += count;
                step += 1;
                let (rss, _) = rss_mib(&server);
                let reads = sample_reads(&server, step, per_step, samples / 4, &mut rng).await?;
                let mut figures = Figures::default();
                figures.set("run", run as f64);
                figures.set("engagements", created as f64);
                figures.set("pending timers", store.count_timers().await? as f64);
                figures.set("create/s", count as f64 / report.wall.as_secs_f64());
                figures.set("RSS MiB", rss);
                figures.set("get p99 ms", reads.0.percentile_ms(99.0));
                figures.set("list p99 ms", reads.1.percentile_ms(99.0));
                eprintln!("  {figures:?}");
                growth.push(figures);
            }
            let load_time = started.elapsed();
            let (get, list) = sample_reads(&server, step, per_step, samples, &mut rng).await?;
            let (rss, peak) = rss_mib(&server);
            let mut figures = Figures::default();
            figures.set("engagements", created as f64);
            figures.set("pending timers", store.count_timers().await? as f64);
            figures.set("load s", load_time.as_secs_f64());
            figures.set("get p50 ms", get.percentile_ms(50.0));
            figures.set("get p99 ms", get.percentile_ms(99.0));
            figures.set("list p50 ms", list.percentile_ms(50.0));
            figures.set("list p99 ms", list.percentile_ms(99.0));
            figures.set("RSS MiB", rss);
            figures.set("peak RSS MiB", peak);
            eprintln!("  {figures:?}");
            runs.push(figures);
            server.terminate(Duration::from_secs(60)).await;
        }
        println!(
            "{}",
            rows(
                &format!("(b) store growth on {}, every run", backend_name(backend)),
                &growth
            )
        );
        println!(
            "{}",
            table(
                &format!(
                    "(b) {engagements} active engagements on {}: reads one at a time, memory",
                    backend_name(backend)
                ),
                &runs,
                "get p99 ms"
            )
        );
    }
    Ok(())
}

/// Times `samples` GetEngagement calls on random engagements and `samples` ListTasks calls
/// (a page of 50) for random coaches, one at a time.
/// While the load runs: a GetEngagement of a random engagement of the run and the
/// ListTasks of its coach, one at a time, every 20 ms (engagements not created yet are
/// skipped).
async fn reads_under_load(
    mut grpc: EngagementServiceClient<Channel>,
    tokens: load::Tokens,
    id_prefix: &'static str,
    engagements: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Latencies, Latencies)> {
    let mut rng = Lcg::new(7);
    let mut get = Latencies::new();
    let mut list = Latencies::new();
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let index = rng.below(engagements.max(1));
        let name = engagement_name(&format!("{id_prefix}{index:07}"));
        let sent = Instant::now();
        match grpc
            .get_engagement(tokens.request(proto::GetEngagementRequest { name: name.clone() }, SERVICE_ACTOR))
            .await
        {
            Ok(_) => get.record(sent.elapsed()),
            Err(status) if status.code() == tonic::Code::NotFound => continue,
            Err(status) => bail!("GetEngagement {name} under load: {status}"),
        }
        let sent = Instant::now();
        list_tasks_of(&mut grpc, &tokens, &format!("coach-{}", index % 1000)).await?;
        list.record(sent.elapsed());
    }
    Ok((get, list))
}

async fn sample_reads(
    server: &TestServer,
    steps: usize,
    per_step: usize,
    samples: usize,
    rng: &mut Lcg,
) -> anyhow::Result<(Latencies, Latencies)> {
    let mut grpc = client(server).await?;
    let tokens = load::Tokens::for_server(server);
    let mut get = Latencies::new();
    let mut list = Latencies::new();
    for _ in 0..samples.max(1) {
        let step = rng.below(steps);
        let index = rng.below(per_step);
        let name = engagement_name(&format!("s{step}-{index:07}"));
        let sent = Instant::now();
        grpc.get_engagement(tokens.request(proto::GetEngagementRequest { name: name.clone() }, SERVICE_ACTOR))
            .await
            .map_err(|status| anyhow!("GetEngagement {name}: {status}"))?;
        get.record(sent.elapsed());

        let coach = format!("coach-{}", rng.below(1000.min(per_step * steps)));
        let sent = Instant::now();
        let page = list_tasks_of(&mut grpc, &tokens, &coach).await?;
        list.record(sent.elapsed());
        if page.tasks.is_empty() {
            bail!("ListTasks {coach} found nothing");
        }
    }
    Ok((get, list))
}

/// The first page (50) of `coach`'s open tasks.
async fn list_tasks_of(
    grpc: &mut EngagementServiceClient<Channel>,
    tokens: &load::Tokens,
    coach: &str,
) -> anyhow::Result<proto::ListTasksResponse> {
    Ok(grpc
        .list_tasks(tokens.request(
            proto::ListTasksRequest {
                parent: parent(),
                assignee: coach.to_owned(),
                queue: proto::list_tasks_request::Queue::Unspecified.into(),
                page_size: 50,
                page_token: String::new(),
            },
            SERVICE_ACTOR,
        ))
        .await
        .map_err(|status| anyhow!("ListTasks {coach}: {status}"))?
        .into_inner())
}

/// A small deterministic generator: the same samples in every run.
#[derive(Debug)]
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Lcg {
        Lcg(seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407))
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound.max(1) as u64) as usize
    }
}

// ----- (c) timer storm ---------------------------------------------------------------------

pub async fn storm(common: &Common, timers: usize, concurrency: usize) -> anyhow::Result<()> {
    let source = builtin_source("four-stage");
    let title = |backend| {
        format!(
            "(c) {timers} timers due in the same instant on {}: time until all fired",
            backend_name(backend)
        )
    };
    each_run(
        common,
        &format!("storm: {timers} timers"),
        "all fired s",
        title,
        async |backend| {
            let mut server = common.server(backend, &[]).await;
            let published = server.publish(&source).await;
            // Every engagement starts at the same (standing) time, so each one's kick-off
            // reminder falls due at the same instant.
            let report = load::run(
                &server,
                parse_model(&source),
                &published,
                LoadSettings {
                    engagements: timers,
                    concurrency,
                    stakeholders: 2,
                    id_prefix: "t".to_owned(),
                    start_only: true,
                    keep_acks: false,
                },
            )
            .await?;
            if report.failed > 0 {
                bail!("{} engagements failed to start: {:?}", report.failed, report.errors);
            }
            let first = server.history(&engagement_name("t0000000")).await;
            let due = history::timers(&first)
                .pending
                .values()
                .min()
                .copied()
                .context("the first engagement has no timer")?;
            let before = fired_timers(&server).await;
            server.set_time(due);
            let moved = Instant::now();
            let mut fired = 0.0;
            let mut half = None;
            while moved.elapsed() < Duration::from_secs(600) {
                fired = fired_timers(&server).await - before;
                if half.is_none() && fired >= timers as f64 / 2.0 {
                    half = Some(moved.elapsed());
                }
                if fired >= timers as f64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let all = moved.elapsed();
            let (rss, peak) = rss_mib(&server);
            let mut figures = Figures::default();
            figures.set("timers", timers as f64);
            figures.set("fired", fired);
            figures.set("half fired s", half.map_or(f64::NAN, |half| half.as_secs_f64()));
            figures.set("all fired s", all.as_secs_f64());
            figures.set("fired/s", fired / all.as_secs_f64());
            figures.set("RSS MiB", rss);
            figures.set("peak RSS MiB", peak);
            server.terminate(Duration::from_secs(60)).await;
            Ok(figures)
        },
    )
    .await
}

// ----- (d) long history --------------------------------------------------------------------

pub async fn history(common: &Common, events: u64, samples: usize) -> anyhow::Result<()> {
    let source = builtin_source("four-stage");
    let title = |backend| {
        format!(
            "(d) one engagement with {events} history events on {}: GetEngagement, one at a time",
            backend_name(backend)
        )
    };
    each_run(
        common,
        &format!("history: {events} events"),
        "get p99 ms",
        title,
        async |backend| {
            let mut server = common.server(backend, &[]).await;
            let published = server.publish(&source).await;
            let created = server.create_engagement(&published, "long", 2).await;
            let name = created.name.clone();
            let mut grpc = client(&server).await?;
            let tokens = load::Tokens::for_server(&server);
            grpc.record_goal(tokens.request(
                proto::RecordGoalRequest {
                    engagement: name.clone(),
                    goal_id: "goal-1".to_owned(),
                    title: "Delegate the weekly operations review".to_owned(),
                    measure: String::new(),
                    target: String::new(),
                    due_date: String::new(),
                    etag: String::new(),
                    request_id: String::new(),
                },
                SERVICE_ACTOR,
            ))
            .await
            .map_err(|status| anyhow!("RecordGoal: {status}"))?;
            // A check-in's progress on the goal, again and again: the history grows, the
            // state does not.
            let mut count = 0;
            let mut writes = Latencies::new();
            let mut progress = 0;
            while count < events {
                progress = (progress + 7) % 101;
                let sent = Instant::now();
                let engagement = grpc
                    .record_goal_progress(tokens.request(
                        proto::RecordGoalProgressRequest {
                            engagement: name.clone(),
                            goal_id: "goal-1".to_owned(),
                            progress,
                            status: proto::goal::Status::Unspecified.into(),
                            note: String::new(),
                            etag: String::new(),
                            request_id: String::new(),
                        },
                        SERVICE_ACTOR,
                    ))
                    .await
                    .map_err(|status| anyhow!("RecordGoalProgress: {status}"))?
                    .into_inner();
                writes.record(sent.elapsed());
                count = engagement.event_count;
            }
            let mut get = Latencies::new();
            let mut size = 0;
            for _ in 0..samples.max(1) {
                let sent = Instant::now();
                let engagement = grpc
                    .get_engagement(tokens.request(proto::GetEngagementRequest { name: name.clone() }, SERVICE_ACTOR))
                    .await
                    .map_err(|status| anyhow!("GetEngagement: {status}"))?
                    .into_inner();
                get.record(sent.elapsed());
                size = prost::Message::encoded_len(&engagement);
            }
            let mut figures = Figures::default();
            figures.set("events", count as f64);
            figures.set("write p50 ms", writes.percentile_ms(50.0));
            figures.set("write p99 ms", writes.percentile_ms(99.0));
            figures.set("get p50 ms", get.percentile_ms(50.0));
            figures.set("get p99 ms", get.percentile_ms(99.0));
            figures.set("get max ms", get.max_ms());
            figures.set("reply bytes", size as f64);
            server.terminate(Duration::from_secs(60)).await;
            Ok(figures)
        },
    )
    .await
}
