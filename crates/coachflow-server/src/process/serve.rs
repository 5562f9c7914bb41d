//! `coachflow serve`: the gRPC services, the timer runner, the periodic jobs and the metrics
//! endpoint, started from validated settings and stopped cleanly on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use coachflow_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::application::{Core, CoreSettings};
use crate::clock::{FileClock, SharedClock, SystemClock};
use crate::metrics as names;
use crate::process::config::{AuthSettings, JwksLocation, Settings, TlsSettings};
use crate::process::health::Health;
use crate::process::operations::{self, WorkerSettings};
use crate::process::timers::{self, RunnerSettings};
use crate::proto::engagement_service_server::EngagementServiceServer;
use crate::proto::event_service_server::EventServiceServer;
use crate::proto::google::longrunning::operations_server::OperationsServer;
use crate::proto::model_service_server::ModelServiceServer;
use crate::trace::Traced;
use crate::transport::auth::jwt::Validation;
use crate::transport::auth::local::{LOCAL_AUDIENCE, LOCAL_ISSUER, LocalKey};
use crate::transport::auth::source::{FileKeys, HttpsKeys, KeySource};
use crate::transport::auth::{Authenticated, Authenticator, Mode};
use crate::transport::limits::OversizeStatus;
use crate::transport::services::engagements::EngagementApi;
use crate::transport::services::events::EventApi;
use crate::transport::services::models::ModelApi;
use crate::transport::services::operations::OperationsApi;

/// Engagements of a bulk migration whose outcomes are recorded together.
const OPERATION_BATCH: u64 = 32;

/// Connects to the database and, with `migrate`, brings its schema up to date.
pub async fn open_store(settings: &Settings, migrate: bool) -> anyhow::Result<Store> {
    let database = &settings.config.database;
    let store = Store::connect(
        &database.url,
        StoreOptions {
            max_connections: database.max_connections,
            snapshot_every: database.snapshot_every,
            kek: settings.kek.clone(),
        },
    )
    .await
    .with_context(|| format!("cannot open the database at {}", redact(&database.url)))?;
    if migrate {
        store.migrate().await.context("cannot migrate the database")?;
    }
    Ok(store)
}

/// The service's clock: the machine's, or the testing aid's file (`clock_file`).
pub fn clock(settings: &Settings) -> SharedClock {
    let file = &settings.config.clock_file;
    if file.is_empty() {
        Arc::new(SystemClock)
    } else {
        tracing::warn!(file = %file, "reading the time from a file (a testing aid)");
        Arc::new(FileClock::new(file.clone().into()))
    }
}

/// How callers are authenticated, from the settings: the issuer's keys read (so a missing
/// or broken key set is found at start), or local mode's own key made or read.
pub fn authenticator(settings: &Settings, clock: SharedClock) -> anyhow::Result<Authenticator> {
    let mode = match &settings.auth {
        AuthSettings::Local { key_file } => {
            let key = LocalKey::load_or_create(key_file).map_err(anyhow::Error::msg)?;
            tracing::warn!(
                key = %key.path().display(),
                "local mode (no auth.issuer): serving loopback only; a call without a token acts as the local \
                 administrator, and `coachflow token` mints tokens for trying other principals"
            );
            Mode::Local {
                keys: KeySource::Fixed(Arc::new(key.key_set())),
                validation: Validation {
                    issuer: LOCAL_ISSUER.to_owned(),
                    audience: LOCAL_AUDIENCE.to_owned(),
                    tenant_claim: "tenant".to_owned(),
                    leeway: std::time::Duration::from_secs(60),
                },
            }
        }
        AuthSettings::Issuer {
            issuer,
            audience,
            jwks,
            jwks_ca,
            jwks_cache,
            tenant_claim,
            leeway,
        } => {
            let keys = match jwks {
                JwksLocation::File(path) => KeySource::File(
                    FileKeys::open(path.clone()).map_err(|error| anyhow::anyhow!("auth.jwks: {error}"))?,
                ),
                JwksLocation::Https(url) => {
                    let roots = jwks_ca
                        .as_ref()
                        .map(|path| {
                            std::fs::read(path).with_context(|| format!("auth.jwks_ca: cannot read {}", path.display()))
                        })
                        .transpose()?;
                    KeySource::Https(
                        HttpsKeys::new(url, roots.as_deref(), *jwks_cache, Arc::clone(&clock))
                            .map_err(|error| anyhow::anyhow!("auth.jwks: {error}"))?,
                    )
                }
            };
            tracing::info!(issuer = %issuer, audience = %audience, "every call needs a token of the issuer");
            Mode::Issuer {
                keys,
                validation: Validation {
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                    tenant_claim: tenant_claim.clone(),
                    leeway: *leeway,
                },
            }
        }
    };
    Ok(Authenticator::new(mode, clock))
}

/// The gRPC port's TLS, from PEM files.
fn tls_config(tls: &TlsSettings) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{setting}: cannot read {}", path.display()))
    };
    let identity =
        tonic::transport::Identity::from_pem(read("server.tls.cert", &tls.cert)?, read("server.tls.key", &tls.key)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(client_ca) = &tls.client_ca {
        config = config
            .client_ca_root(tonic::transport::Certificate::from_pem(read(
                "server.tls.client_ca",
                client_ca,
            )?))
            .client_auth_optional(false);
    }
    Ok(config)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The name a gRPC service answers health checks under (`coachflow.v1.EngagementService`).
fn service_name<S: tonic::server::NamedService>() -> &'static str {
    S::NAME
}

/// Where a running server listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Runs the service until SIGTERM or Ctrl-C. `ready` is called once it accepts requests.
pub async fn serve(settings: Settings, ready: impl FnOnce(Bound)) -> anyhow::Result<()> {
    let (shutdown_sender, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = shutdown_sender.send(true);
    });
    run(settings, shutdown, ready).await
}

/// Runs the service until `shutdown` turns true.
pub async fn run(settings: Settings, shutdown: watch::Receiver<bool>, ready: impl FnOnce(Bound)) -> anyhow::Result<()> {
    let config = &settings.config;
    let prometheus = names::install()?;
    let store = open_store(&settings, config.database.migrate).await?;
    let clock = clock(&settings);
    let authenticator = Arc::new(authenticator(&settings, Arc::clone(&clock))?);
    authenticator.prefetch().await;
    let core = Arc::new(Core::new(
        store.clone(),
        clock,
        CoreSettings {
            max_retries: config.commands.max_retries,
            cached_engagements: config.commands.cached_engagements,
            idempotency_ttl: settings.idempotency_ttl,
            audience: settings.audience.clone(),
        },
    ));

    let grpc_listener = TcpListener::bind(settings.grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", settings.grpc_listen))?;
    let metrics_listener = match settings.metrics_listen {
        Some(address) => Some(
            names::bind(address)
                .await
                .with_context(|| format!("cannot listen for metrics on {address}"))?,
        ),
        None => None,
    };
    let bound = Bound {
        grpc: grpc_listener.local_addr()?,
        metrics: metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?,
    };

    let metrics_task =
        metrics_listener.map(|listener| tokio::spawn(names::serve(listener, prometheus, shutdown.clone())));
    let runner = config.timers.enabled.then(|| {
        tokio::spawn(timers::run(
            Arc::clone(&core),
            RunnerSettings {
                owner: config.instance_id.clone(),
                batch_size: config.timers.batch_size,
                concurrency: config.timers.concurrency,
                lease: settings.lease,
                poll_interval: settings.poll_interval,
            },
            shutdown.clone(),
        ))
    });
    let worker = tokio::spawn(operations::run(
        Arc::clone(&core),
        WorkerSettings {
            owner: config.instance_id.clone(),
            batch_size: OPERATION_BATCH,
            concurrency: config.timers.concurrency,
            lease: settings.lease,
            poll_interval: settings.poll_interval,
        },
        shutdown.clone(),
    ));
    let mut scheduler = periodic_jobs(&settings, &core).await?;
    tokio::spawn(rewrap_content_keys(store.clone(), shutdown.clone()));
    // The relay stops after the gRPC server, so what in-flight requests commit still goes out.
    let (relay_stop, relay_shutdown) = watch::channel(false);
    let (broker_connected, broker_status) = watch::channel(false);
    let relay = match &settings.relay {
        Some(relay_settings) => {
            let clock = Arc::clone(&core);
            Some(tokio::spawn(coachflow_broker::run(
                store.clone(),
                relay_settings.clone(),
                Arc::new(move || clock.now()),
                core.watch_commits(),
                relay_shutdown,
                broker_connected,
            )))
        }
        None => {
            tracing::info!("no broker.url: public events are served by WatchEvents only");
            None
        }
    };

    let limit = config.grpc.max_message_bytes;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::new(
        reporter,
        vec![
            service_name::<ModelServiceServer<ModelApi>>(),
            service_name::<EngagementServiceServer<EngagementApi>>(),
            service_name::<EventServiceServer<EventApi>>(),
            service_name::<OperationsServer<OperationsApi>>(),
        ],
        store.clone(),
        relay.is_some().then_some(broker_status),
    );
    // Readiness answers from the first look at the database, before the port opens.
    let (health_stop, health_shutdown) = watch::channel(false);
    let first = health.check(None).await;
    let health_task = tokio::spawn(Arc::clone(&health).run(first, settings.health_interval, health_shutdown));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    tracing::info!(
        grpc = %bound.grpc,
        metrics = ?bound.metrics,
        database = %redact(&config.database.url),
        broker = %redact(&config.broker.url),
        "serving"
    );
    ready(bound);

    let mut stop = shutdown.clone();
    let drain_delay = settings.drain_delay;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &settings.tls {
        builder = builder
            .tls_config(tls_config(tls)?)
            .context("cannot set up TLS for the gRPC port")?;
        tracing::info!(mutual = tls.client_ca.is_some(), "the gRPC port speaks TLS");
    }
    let server = builder
        .layer(OversizeStatus::layer())
        .layer(Traced::layer())
        .layer(Authenticated::layer(authenticator))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            ModelServiceServer::new(ModelApi::new(Arc::clone(&core)))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            EngagementServiceServer::new(EngagementApi::new(Arc::clone(&core)))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            EventServiceServer::new(EventApi::new(Arc::clone(&core), shutdown.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            OperationsServer::new(OperationsApi::new(Arc::clone(&core)))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(incoming(grpc_listener), async move {
            // Not ready first, still accepting for the drain delay (load balancers see it and
            // stop sending), then no new requests while the in-flight ones finish.
            let _ = stop.wait_for(|stop| *stop).await;
            let _ = health_stop.send(true);
            health.shutting_down().await;
            tokio::time::sleep(drain_delay).await;
        });

    // In-flight requests finish; past the grace period the rest are dropped.
    let mut grace = shutdown.clone();
    tokio::select! {
        result = server => result.context("the gRPC server failed")?,
        () = async {
            let _ = grace.wait_for(|stop| *stop).await;
            tokio::time::sleep(drain_delay + settings.shutdown_grace).await;
        } => tracing::warn!("in-flight requests did not finish within the grace period"),
    }
    let _ = health_task.await;
    if let Some(runner) = runner {
        let _ = runner.await;
    }
    let _ = worker.await;
    let _ = relay_stop.send(true);
    if let Some(relay) = relay
        && tokio::time::timeout(settings.shutdown_grace, relay).await.is_err()
    {
        tracing::warn!(
            "the event relay did not stop within the grace period; unconfirmed events are sent on the next start"
        );
    }
    if let Err(error) = scheduler.shutdown().await {
        tracing::warn!(error = %error, "periodic jobs did not stop cleanly");
    }
    if let Some(metrics_task) = metrics_task {
        let _ = metrics_task.await;
    }
    store.close().await.context("cannot close the database")?;
    tracing::info!("stopped");
    Ok(())
}

/// Data keys rewrapped per statement batch at start.
const REWRAP_BATCH: u64 = 500;

/// Moves every data key under the current key-encryption key (after `content.kek` gained a
/// new first key), in batches, once the schema is current; replicas doing it at once do
/// no harm.
async fn rewrap_content_keys(store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if matches!(store.pending_migrations().await, Ok(0)) {
            match store.content_keys_to_rewrap().await {
                Ok(0) => return,
                Ok(pending) => {
                    tracing::info!(pending, "rewrapping data keys under the current key-encryption key");
                    break;
                }
                Err(error) => tracing::warn!(error = %error, "cannot read the data keys"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            _ = shutdown.changed() => return,
        }
    }
    let mut total = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match store.rewrap_content_keys(REWRAP_BATCH).await {
            Ok(0) => break,
            Ok(rewrapped) => {
                total += rewrapped;
                metrics::counter!(names::CONTENT_KEYS_REWRAPPED).increment(rewrapped);
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot rewrap data keys");
                return;
            }
        }
    }
    tracing::info!(
        rewrapped = total,
        "every data key is under the current key-encryption key"
    );
}

/// The service's own periodic jobs: the fallback poll that wakes the timer runner (timers
/// scheduled by other replicas), forgetting expired request ids, and the gauges.
async fn periodic_jobs(settings: &Settings, core: &Arc<Core>) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new().await.context("cannot create the job scheduler")?;

    let wake = core.timers_changed();
    scheduler
        .add(Job::new_async(
            settings.config.timers.fallback_schedule.as_str(),
            move |_, _| {
                let wake = Arc::clone(&wake);
                Box::pin(async move { wake.notify_one() })
            },
        )?)
        .await?;

    let cleanup = Arc::clone(core);
    scheduler
        .add(Job::new_async(
            settings.config.idempotency.cleanup_schedule.as_str(),
            move |_, _| {
                let core = Arc::clone(&cleanup);
                Box::pin(async move {
                    match core.store().delete_expired_idempotency_keys(core.now()).await {
                        Ok(deleted) => metrics::counter!(names::IDEMPOTENCY_KEYS_EXPIRED).increment(deleted),
                        Err(error) => tracing::warn!(error = %error, "cannot delete expired request ids"),
                    }
                })
            },
        )?)
        .await?;

    if !settings.retention.is_empty() {
        let retention = Arc::clone(core);
        let policies = Arc::new(settings.retention.clone());
        // One run at a time in this replica: a tick while the last run goes on is skipped.
        let running = Arc::new(tokio::sync::Mutex::new(()));
        scheduler
            .add(Job::new_async(
                settings.config.retention.schedule.as_str(),
                move |_, _| {
                    let core = Arc::clone(&retention);
                    let policies = Arc::clone(&policies);
                    let running = Arc::clone(&running);
                    Box::pin(async move {
                        let Ok(_turn) = running.try_lock() else {
                            return;
                        };
                        match core.run_retention(&policies).await {
                            Ok(run) if run != Default::default() => tracing::info!(
                                engagements_erased = run.engagements_erased,
                                outbox_pruned = run.outbox_pruned,
                                idempotency_keys_pruned = run.idempotency_keys_pruned,
                                "retention ran"
                            ),
                            Ok(_) => {}
                            Err(error) => tracing::warn!(error = %error, "the retention job failed"),
                        }
                    })
                },
            )?)
            .await?;
    }

    let gauges = Arc::clone(core);
    scheduler
        .add(Job::new_async("*/15 * * * * *", move |_, _| {
            let core = Arc::clone(&gauges);
            Box::pin(async move { update_gauges(&core).await })
        })?)
        .await?;
    update_gauges(core).await;

    scheduler.start().await.context("cannot start the job scheduler")?;
    Ok(scheduler)
}

async fn update_gauges(core: &Core) {
    let store = core.store();
    match store.count_engagements_by_status().await {
        Ok(counts) => {
            for state in ["active", "suspended", "completed", "cancelled"] {
                let count = counts
                    .iter()
                    .find(|(status, _)| status == state)
                    .map_or(0, |(_, count)| *count);
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!(names::ENGAGEMENTS, "state" => state).set(count as f64);
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot count engagements"),
    }
    match store.count_open_tasks().await {
        #[allow(clippy::cast_precision_loss)]
        Ok(counts) => {
            metrics::gauge!(names::OPEN_TASKS).set(counts.open as f64);
            metrics::gauge!(names::DUE_SOON_TASKS).set(counts.due_soon as f64);
            metrics::gauge!(names::OVERDUE_TASKS).set(counts.overdue as f64);
        }
        Err(error) => tracing::warn!(error = %error, "cannot count open tasks"),
    }
    match store.count_timers().await {
        #[allow(clippy::cast_precision_loss)]
        Ok(count) => metrics::gauge!(names::PENDING_TIMERS).set(count as f64),
        Err(error) => tracing::warn!(error = %error, "cannot count timers"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Accepted gRPC connections, with Nagle's algorithm off: a reply is a few small HTTP/2
/// frames, and without `TCP_NODELAY` the last one waits for the client's delayed ACK
/// (40 ms on Linux) whenever the previous write is still unacknowledged.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("sqlite://coachflow.db"), "sqlite://coachflow.db");
    }
}
