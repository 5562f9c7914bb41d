//! The event relay against the real RabbitMQ and PostgreSQL (or SQLite): how many events it
//! relays per second with publisher confirms, and the lag from a command's start to a
//! consumer's receipt of its events.
//!
//! ```sh
//! cargo bench -p coachflow-integration-tests --bench relay_throughput            # PostgreSQL
//! COACHFLOW_BENCH_BACKEND=sqlite cargo bench -p coachflow-integration-tests --bench relay_throughput
//! ```
//!
//! Commands run in-process the way the server runs them (engine `decide`, public events
//! mapped by `public_event`, one `Store::commit`), so the figures are the relay's and the
//! store's, not gRPC's. Each scenario runs several times on a fresh database and a fresh
//! exchange; the medians are printed.
//!
//! 1. **Backlog drain**: 2,000 engagements started (about 10 public events each) before the
//!    relay starts; time until a consumer bound to `#` has every event.
//! 2. **Lag**: 8 writers start 1,200 engagements while the relay runs, paced at 100 and 400
//!    starts per second in all, then flat out; for each event, from the start of the command
//!    that caused it to its receipt. Flat out, the lag is mostly the queue of the backlog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use coachflow_broker::{ContentMode, RelaySettings};
use coachflow_engine::{Action, Actor, Audience, Command, EngagementRef, EngagementState, decide};
use coachflow_integration_tests::amqp::{self, Consumer, TestExchange};
use coachflow_model::Model;
use coachflow_server::application::outbox_rows;
use coachflow_store::{Commit, Store, StoreOptions};
use tokio::sync::watch;

const RUNS: usize = 3;
const DRAIN_ENGAGEMENTS: usize = 2_000;
const LAG_WRITERS: usize = 8;
const LAG_ENGAGEMENTS_PER_WRITER: usize = 150;

fn model() -> Arc<Model> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/four-stage.yaml");
    Arc::new(Model::from_text(&std::fs::read_to_string(path).unwrap()).unwrap())
}

fn people() -> BTreeMap<String, Vec<String>> {
    [
        ("client", "client-1"),
        ("coach", "coach-1"),
        ("sponsor", "sponsor-1"),
        ("hr", "hr-1"),
        ("stakeholder", "stakeholder-1"),
    ]
    .into_iter()
    .map(|(role, person)| (role.to_owned(), vec![person.to_owned()]))
    .collect()
}

/// Starts engagement `id` as the server would; returns how many public events it wrote.
async fn start(store: &Store, model: &Model, id: &str) -> usize {
    let now = Utc::now();
    let command = Command {
        actor: Actor::Service("bench".to_owned()),
        action: Action::Start {
            model_version: 1,
            timezone: Some("UTC".to_owned()),
            people: people(),
        },
    };
    let decision = decide(model, &EngagementState::default(), &command, now).unwrap();
    let name = format!("tenants/acme/engagements/{id}");
    let reference = EngagementRef { name: &name };
    let outbox = outbox_rows("acme", reference, model, &Audience::default(), &decision, None);
    store
        .commit(Commit {
            tenant: "acme",
            engagement: id,
            expected_sequence: 0,
            events: &decision.events,
            effects: &decision.effects,
            state: &decision.state,
            outbox: &outbox,
            idempotency: None,
            now,
        })
        .await
        .unwrap();
    outbox.len()
}

struct Relay {
    stop: watch::Sender<bool>,
    wake: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

fn start_relay(store: &Store, exchange: &str, batch_size: u64) -> Relay {
    let settings = RelaySettings {
        url: amqp::amqp_url(),
        exchange: exchange.to_owned(),
        mode: ContentMode::Binary,
        declare_exchange: true,
        owner: format!("bench-{}", std::process::id()),
        batch_size,
        poll_interval: Duration::from_millis(200),
        lease: Duration::from_secs(30),
        confirm_timeout: Duration::from_secs(10),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
    };
    let (stop, shutdown) = watch::channel(false);
    let (wake, woken) = watch::channel(0);
    let task = tokio::spawn(coachflow_broker::run(
        store.clone(),
        settings,
        Arc::new(Utc::now),
        woken,
        shutdown,
        watch::channel(false).0,
    ));
    Relay { stop, wake, task }
}

impl Relay {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn fresh_store() -> (Store, Box<dyn std::any::Any + Send>) {
    let options = StoreOptions {
        max_connections: 16,
        snapshot_every: 100,
        ..StoreOptions::default()
    };
    if std::env::var("COACHFLOW_BENCH_BACKEND").as_deref() == Ok("sqlite") {
        let (store, guard) = coachflow_store::testing::fresh_sqlite_with(options).await;
        (store, Box::new(guard))
    } else {
        let (store, guard) = coachflow_store::testing::fresh_postgres_with(options).await;
        (store, Box::new(guard))
    }
}

/// Events per second relayed from a full outbox.
async fn drain(model: &Arc<Model>, batch_size: u64) -> (usize, f64) {
    let (store, _guard) = fresh_store().await;
    let mut total = 0;
    for n in 0..DRAIN_ENGAGEMENTS {
        total += start(&store, model, &format!("drain-{n}")).await;
    }
    let exchange = TestExchange::new("bench-drain");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let started = Instant::now();
    let relay = start_relay(&store, exchange.name(), batch_size);
    let mut received = 0;
    while received < total {
        consumer
            .next(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("stalled at {received} of {total}"));
        received += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    relay.stop().await;
    exchange.cleanup().await;
    (total, total as f64 / elapsed)
}

/// Lags (seconds) from each command's start to the receipt of each of its events; with a
/// `rate`, commands start at that many per second in all, else as fast as they can.
async fn lag(model: &Arc<Model>, rate: Option<f64>) -> Vec<f64> {
    let (store, _guard) = fresh_store().await;
    let exchange = TestExchange::new("bench-lag");
    let mut consumer = Consumer::bind(exchange.url(), exchange.name(), &["#"]).await;
    let relay = start_relay(&store, exchange.name(), 500);
    // Let the relay connect before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let origin = Instant::now();
    // Arrivals are timed as they come, beside the writers.
    let (total_sender, mut total_known) = watch::channel(None::<usize>);
    let receiver = tokio::spawn(async move {
        let mut arrivals = Vec::new();
        loop {
            if let Some(total) = *total_known.borrow_and_update()
                && arrivals.len() >= total
            {
                return arrivals;
            }
            let message = consumer
                .next(Duration::from_secs(60))
                .await
                .unwrap_or_else(|| panic!("stalled after {} events", arrivals.len()));
            let subject = message.header_str("cloudEvents_subject").unwrap().to_owned();
            arrivals.push((subject, origin.elapsed()));
        }
    });
    let writers: Vec<_> = (0..LAG_WRITERS)
        .map(|writer| {
            let (store, model, wake) = (store.clone(), Arc::clone(model), relay.wake.clone());
            tokio::spawn(async move {
                let mut started = Vec::new();
                for n in 0..LAG_ENGAGEMENTS_PER_WRITER {
                    if let Some(rate) = rate {
                        let slot = (n * LAG_WRITERS + writer) as f64 / rate;
                        tokio::time::sleep_until((origin + Duration::from_secs_f64(slot)).into()).await;
                    }
                    let id = format!("lag-{writer}-{n}");
                    let at = origin.elapsed();
                    let events = start(&store, &model, &id).await;
                    wake.send_modify(|commits| *commits += 1);
                    started.push((id, at, events));
                }
                started
            })
        })
        .collect();
    let mut commands: HashMap<String, Duration> = HashMap::new();
    let mut total = 0;
    for writer in writers {
        for (id, at, events) in writer.await.unwrap() {
            commands.insert(format!("tenants/acme/engagements/{id}"), at);
            total += events;
        }
    }
    total_sender.send_replace(Some(total));
    let arrivals = receiver.await.unwrap();
    let mut lags = Vec::with_capacity(total);
    for (subject, arrived) in arrivals {
        lags.push((arrived - commands[&subject]).as_secs_f64());
    }
    relay.stop().await;
    exchange.cleanup().await;
    lags
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` run of the bench target does not.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }
    let backend = std::env::var("COACHFLOW_BENCH_BACKEND").unwrap_or_else(|_| "postgres".to_owned());
    let model = model();
    println!("relay benchmark on {backend}, {RUNS} runs each, medians\n");
    println!("backlog drain: {DRAIN_ENGAGEMENTS} engagements started before the relay");
    println!("{:>10} {:>8} {:>12}", "batch", "events", "events/s");
    let batches: &[u64] = if std::env::var("COACHFLOW_BENCH_QUICK").is_ok() {
        &[500]
    } else {
        &[100, 500, 2000]
    };
    for &batch_size in batches {
        let mut rates = Vec::new();
        let mut events = 0;
        for _ in 0..RUNS {
            let (total, rate) = drain(&model, batch_size).await;
            events = total;
            rates.push(rate);
        }
        println!("{batch_size:>10} {events:>8} {:>12.0}", median(&mut rates));
    }
    println!(
        "\nlag from command start to consumer: {LAG_WRITERS} writers x {LAG_ENGAGEMENTS_PER_WRITER} engagement starts"
    );
    println!(
        "{:>16} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "starts/s", "events", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for rate in [Some(100.0), Some(400.0), None] {
        let mut p50s = Vec::new();
        let mut p90s = Vec::new();
        let mut p99s = Vec::new();
        let mut maxes = Vec::new();
        let mut events = 0;
        for _ in 0..RUNS {
            let mut lags = lag(&model, rate).await;
            lags.sort_by(f64::total_cmp);
            events = lags.len();
            p50s.push(percentile(&lags, 0.50) * 1000.0);
            p90s.push(percentile(&lags, 0.90) * 1000.0);
            p99s.push(percentile(&lags, 0.99) * 1000.0);
            maxes.push(lags[lags.len() - 1] * 1000.0);
        }
        let label = rate.map_or_else(|| "flat out".to_owned(), |rate| format!("{rate:.0}"));
        println!(
            "{label:>16} {events:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            median(&mut p50s),
            median(&mut p90s),
            median(&mut p99s),
            median(&mut maxes)
        );
    }
}
