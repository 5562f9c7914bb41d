//! The service's configuration, loaded in one place in layers: defaults → YAML file →
//! `COACHFLOW_*` environment variables → command-line flags, then validated.
//!
//! Every setting has a dotted path (`database.url`) and an environment variable made from it
//! (`COACHFLOW_DATABASE_URL`). Durations are written `500ms`, `30s`, `10m`, `24h` or `7d`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use coachflow_broker::RelaySettings;
use coachflow_engine::Audience;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "COACHFLOW_";

/// `COACHFLOW_*` variables that are not settings: the configuration file, the client's
/// and the test tooling's own (`COACHFLOW_TEST_*` too). Any other unknown one is refused, so
/// a misspelt setting does not go unnoticed.
const NOT_SETTINGS: &[&str] = &[
    "CONFIG",
    "SERVER",
    "TENANT",
    "ACTOR",
    "BIN",
    "TOKEN",
    "SKIP_SERVICES",
    "SKIP_ASYNCAPI",
];

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub grpc: GrpcConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub timers: TimersConfig,
    pub commands: CommandsConfig,
    pub idempotency: IdempotencyConfig,
    pub shutdown: ShutdownConfig,
    pub health: HealthConfig,
    pub telemetry: TelemetryConfig,
    pub broker: BrokerConfig,
    pub events: EventsConfig,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub content: ContentConfig,
    pub retention: RetentionConfig,
    /// This replica's name in timer claims and logs; default `<hostname>-<pid>`.
    pub instance_id: String,
    /// Testing aid: read the time from this file (an RFC 3339 timestamp) instead of the
    /// machine's clock. Empty: the machine's clock.
    pub clock_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://coachflow.db` (the embedded default; created if missing) or
    /// `postgres://user:password@host:5432/database`.
    pub url: String,
    pub max_connections: u32,
    /// Write a snapshot of an engagement's state every this many events.
    pub snapshot_every: u64,
    /// Bring the schema up to date at start. Off where a separate step migrates (the Helm
    /// chart's Job): the server then waits, not ready, until the schema is current.
    pub migrate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address to serve gRPC on; port 0 picks a free port.
    pub listen: String,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`); empty turns it off.
    pub listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable with colour on a terminal; JSON lines when stderr is not one (a file, a
    /// pipe, a container's log).
    Auto,
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,coachflow_store=debug`.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// Run the timer runner in this replica.
    pub enabled: bool,
    /// Longest sleep of the runner between looks at the timers table.
    pub poll_interval: String,
    /// Cron schedule (with seconds) of the fallback poll that wakes the runner.
    pub fallback_schedule: String,
    /// Timers claimed per batch.
    pub batch_size: u64,
    /// Timers fired at once.
    pub concurrency: usize,
    /// How long a claim holds before another replica may take the timer over.
    pub lease: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// How often a command is decided again when another one changed the engagement first.
    pub max_retries: u32,
    /// How many engagements' states this replica keeps after committing them, so the next
    /// command on one does not read it back (0: none). A stale one (another replica
    /// changed the engagement) fails its commit's guard and is read again.
    pub cached_engagements: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long a `request_id` is remembered.
    pub ttl: String,
    /// Cron schedule (with seconds) of the job that forgets expired ones.
    pub cleanup_schedule: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after SIGTERM.
    pub grace: String,
    /// After SIGTERM, how long the server keeps accepting requests while saying it is not
    /// ready, so load balancers stop sending it new ones first.
    pub drain_delay: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often readiness looks at the database (reachable, schema current).
    pub interval: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub otlp: OtlpConfig,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The OpenTelemetry collector's OTLP/gRPC endpoint (`http://collector:4317`, or
    /// `https://…`, verified against the platform's roots); empty: spans are not exported.
    pub endpoint: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: "2s".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// RabbitMQ's AMQP URL, `amqp://user:password@host:5672/%2f`. Empty: no relay; the
    /// public events stay readable through `WatchEvents`.
    pub url: String,
    /// The durable topic exchange the events are published to.
    pub exchange: String,
    /// Declare the exchange on connect (durable, topic); off when it is provisioned
    /// separately.
    pub declare_exchange: bool,
    /// `binary` (CloudEvents attributes as `cloudEvents_*` headers, the data as the body) or
    /// `structured` (one `application/cloudevents+json` body).
    pub content_mode: String,
    /// Outbox rows claimed at a time.
    pub batch_size: u64,
    /// Longest wait between looks at the outbox for events committed by other replicas.
    pub poll_interval: String,
    /// How long a relay's claim on engagements holds before another replica may take them
    /// over (after a crash, their unconfirmed events are sent again then).
    pub lease: String,
    /// How long to wait for the broker's confirm (or to connect) before reconnecting.
    pub confirm_timeout: String,
    /// First pause between reconnection attempts; it doubles up to `reconnect_max`.
    pub reconnect_min: String,
    pub reconnect_max: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Who receives the public events, comma-separated: `integration` and/or roles such as
    /// `hr`. A typed task output is published only if its `visibility` names one of them.
    pub audience: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The issuer a token must name (`iss`). With `audience` and `jwks`; all three empty:
    /// local mode (loopback only).
    pub issuer: String,
    /// The audience a token must name (`aud`).
    pub audience: String,
    /// The issuer's keys: `https://...` (fetched, cached, fetched again for an unknown key
    /// id) or `file:///path/jwks.json` (read again when it changes).
    pub jwks: String,
    /// A PEM file of CA certificates to trust for an `https://` JWKS instead of the
    /// platform's roots; empty: the platform's.
    pub jwks_ca: String,
    /// How long keys fetched over HTTPS are kept before they are fetched again.
    pub jwks_cache: String,
    /// The claim that names the token's tenant.
    pub tenant_claim: String,
    /// Clock skew allowed when checking `exp` and `nbf`.
    pub leeway: String,
    /// Local mode: the key `coachflow token` signs local tokens with; empty: beside the
    /// SQLite database file (`<file>.token-key`), or `coachflow.token-key`.
    pub local_key: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: String::new(),
            audience: String::new(),
            jwks: String::new(),
            jwks_ca: String::new(),
            jwks_cache: "5m".to_owned(),
            tenant_claim: "tenant".to_owned(),
            leeway: "60s".to_owned(),
            local_key: String::new(),
        }
    }
}

/// Content at rest: the key-encryption keys that wrap each engagement's data key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Key-encryption keys (base64 of 32 random bytes, `coachflow keys generate`),
    /// comma-separated, the current one first; the others only unwrap data keys until they
    /// are rewrapped under it (at start). Empty, with `kek_file` empty too: a key file
    /// beside a SQLite database (`<file>.kek`), or on PostgreSQL a key the database keeps
    /// itself (which then does not protect its backups).
    pub kek: String,
    /// A file holding the keys instead, one per line, the current one first.
    pub kek_file: String,
}

/// Retention: what the periodic job erases and prunes, and when it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Cron schedule (with seconds) of the retention job.
    pub schedule: String,
    /// Erase the content of an engagement this long after it ended (empty: keep it).
    pub closed_content_after: String,
    /// Delete a published outbox row this long after it was sent (empty: keep it).
    /// `WatchEvents` cannot replay what was deleted.
    pub sent_outbox_after: String,
    /// Forget a request id this long after its request (empty: at `idempotency.ttl`).
    pub idempotency_keys_after: String,
    /// Tenants with their own policy, as JSON:
    /// `{"acme": {"closed_content_after": "365d", "sent_outbox_after": "30d"}}`; a field a
    /// tenant leaves out keeps its data.
    pub tenants: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            schedule: "0 17 * * * *".to_owned(),
            closed_content_after: String::new(),
            sent_outbox_after: String::new(),
            idempotency_keys_after: String::new(),
            tenants: String::new(),
        }
    }
}

/// One tenant's policy in `retention.tenants`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TenantRetention {
    closed_content_after: String,
    sent_outbox_after: String,
    idempotency_keys_after: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the gRPC port; with `key`, the port speaks TLS only.
    pub cert: String,
    /// PEM private key of `cert`.
    pub key: String,
    /// PEM CA certificates client certificates must chain to: mutual TLS, every client
    /// presents a certificate.
    pub client_ca: String,
}

/// How callers are authenticated, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// Loopback only; local tokens are signed with the key in this file.
    Local { key_file: std::path::PathBuf },
    Issuer {
        issuer: String,
        audience: String,
        jwks: JwksLocation,
        jwks_ca: Option<std::path::PathBuf>,
        jwks_cache: Duration,
        tenant_claim: String,
        leeway: Duration,
    },
}

/// Where the issuer's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    File(std::path::PathBuf),
    Https(String),
}

/// TLS of the gRPC port, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: String::new(),
            exchange: "coachflow.events".to_owned(),
            declare_exchange: true,
            content_mode: "binary".to_owned(),
            batch_size: 2000,
            poll_interval: "1s".to_owned(),
            lease: "30s".to_owned(),
            confirm_timeout: "10s".to_owned(),
            reconnect_min: "200ms".to_owned(),
            reconnect_max: "30s".to_owned(),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            audience: coachflow_model::INTEGRATION_AUDIENCE.to_owned(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://coachflow.db".to_owned(),
            max_connections: 16,
            snapshot_every: 100,
            migrate: true,
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: "127.0.0.1:50051".to_owned(),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".to_owned(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Auto,
            level: "info,tokio_cron_scheduler=warn".to_owned(),
        }
    }
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            enabled: true,
            poll_interval: "1s".to_owned(),
            fallback_schedule: "*/10 * * * * *".to_owned(),
            batch_size: 200,
            concurrency: 200,
            lease: "30s".to_owned(),
        }
    }
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            max_retries: 8,
            cached_engagements: 4096,
        }
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl: "24h".to_owned(),
            cleanup_schedule: "0 */10 * * * *".to_owned(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace: "30s".to_owned(),
            drain_delay: "0s".to_owned(),
        }
    }
}

/// A configuration problem, naming the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// The settings given on the command line, as `(dotted path, value)`.
pub type Overrides = Vec<(String, String)>;

/// Settings after validation, in the types the service uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub grpc_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub idempotency_ttl: Duration,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    pub health_interval: Duration,
    /// Where spans are exported over OTLP, when they are.
    pub otlp_endpoint: Option<String>,
    /// The event relay, when a broker URL is set.
    pub relay: Option<RelaySettings>,
    pub audience: Audience,
    pub auth: AuthSettings,
    pub tls: Option<TlsSettings>,
    /// Where the key-encryption keys come from.
    pub kek: coachflow_store::KekSource,
    pub retention: crate::application::privacy::RetentionPolicies,
}

impl Config {
    /// Loads the layers: defaults, then `file` (YAML or JSON) if given, then the environment
    /// (`env` yields `(name, value)` pairs, normally `std::env::vars()`), then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut layered = serde_json::to_value(Config::default())
            .map_err(|error| ConfigError::new("(defaults)", error.to_string()))?;
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|error| ConfigError::new(file.display().to_string(), format!("cannot read: {error}")))?;
            let from_file: Value = yaml_serde::from_str(&text)
                .map_err(|error| ConfigError::new(file.display().to_string(), format!("not valid YAML: {error}")))?;
            if !from_file.is_null() {
                merge(&mut layered, from_file, "")?;
            }
        }
        let leaves = leaf_paths(&layered);
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (name, value) in &env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if NOT_SETTINGS.contains(&rest) || rest.starts_with("TEST_") {
                continue;
            }
            let path = leaves.iter().find(|path| env_name(path) == *name).ok_or_else(|| {
                ConfigError::new(
                    name.clone(),
                    "unknown setting (see the configuration reference in README.md)",
                )
            })?;
            set(&mut layered, path, value, name)?;
        }
        for (path, value) in overrides {
            if !leaves.contains(path) {
                return Err(ConfigError::new(path.clone(), "unknown setting"));
            }
            set(&mut layered, path, value, path)?;
        }
        let deserializer = layered;
        serde_path_to_error::deserialize(deserializer)
            .map_err(|error| ConfigError::new(error.path().to_string(), error.inner().to_string()))
    }

    /// Checks every setting and converts it to the type the service uses.
    pub fn validate(mut self) -> Result<Settings, ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                "database.url",
                format!("'{url}' is neither a sqlite: nor a postgres:// URL"),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new("database.max_connections", "must be at least 1"));
        }
        if self.database.snapshot_every == 0 {
            return Err(ConfigError::new("database.snapshot_every", "must be at least 1"));
        }
        let grpc_listen = address("grpc.listen", &self.grpc.listen)?;
        let metrics_listen = if self.metrics.listen.is_empty() {
            None
        } else {
            Some(address("metrics.listen", &self.metrics.listen)?)
        };
        if self.grpc.max_message_bytes < 1024 {
            return Err(ConfigError::new("grpc.max_message_bytes", "must be at least 1024"));
        }
        let poll_interval = parse_duration("timers.poll_interval", &self.timers.poll_interval)?;
        let lease = parse_duration("timers.lease", &self.timers.lease)?;
        if self.timers.batch_size == 0 {
            return Err(ConfigError::new("timers.batch_size", "must be at least 1"));
        }
        if self.timers.concurrency == 0 {
            return Err(ConfigError::new("timers.concurrency", "must be at least 1"));
        }
        cron("timers.fallback_schedule", &self.timers.fallback_schedule)?;
        cron("idempotency.cleanup_schedule", &self.idempotency.cleanup_schedule)?;
        let idempotency_ttl = parse_duration("idempotency.ttl", &self.idempotency.ttl)?;
        let shutdown_grace = parse_duration("shutdown.grace", &self.shutdown.grace)?;
        let drain_delay = parse_duration("shutdown.drain_delay", &self.shutdown.drain_delay)?;
        let health_interval = parse_duration("health.interval", &self.health.interval)?;
        let otlp_endpoint = match self.telemetry.otlp.endpoint.as_str() {
            "" => None,
            endpoint if endpoint.starts_with("http://") || endpoint.starts_with("https://") => {
                Some(endpoint.to_owned())
            }
            endpoint => {
                return Err(ConfigError::new(
                    "telemetry.otlp.endpoint",
                    format!("'{endpoint}' is not an http:// or https:// URL of an OTLP/gRPC collector"),
                ));
            }
        };
        if health_interval.is_zero() {
            return Err(ConfigError::new("health.interval", "must be longer than 0s"));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::new("log.level", format!("not a valid filter: {error}")));
        }
        if self.instance_id.is_empty() {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "coachflow".to_owned());
            self.instance_id = format!("{host}-{}", std::process::id());
        }
        let relay = self.relay_settings()?;
        let audience = audience(&self.events.audience)?;
        let auth = self.auth_settings()?;
        if matches!(auth, AuthSettings::Local { .. }) && !grpc_listen.ip().is_loopback() {
            return Err(ConfigError::new(
                "grpc.listen",
                format!(
                    "{grpc_listen} is not a loopback address: without auth.issuer, auth.audience and auth.jwks the \
                     server runs in local mode, which serves loopback only; configure the issuer to serve the network"
                ),
            ));
        }
        let tls = self.tls_settings()?;
        let kek = self.kek_source()?;
        cron("retention.schedule", &self.retention.schedule)?;
        let retention = self.retention_policies()?;
        Ok(Settings {
            config: self,
            grpc_listen,
            metrics_listen,
            poll_interval,
            lease,
            idempotency_ttl,
            shutdown_grace,
            drain_delay,
            health_interval,
            otlp_endpoint,
            relay,
            audience,
            auth,
            tls,
            kek,
            retention,
        })
    }

    fn kek_source(&self) -> Result<coachflow_store::KekSource, ConfigError> {
        let content = &self.content;
        let (setting, keys): (&str, Vec<String>) = match (content.kek.is_empty(), content.kek_file.is_empty()) {
            (true, true) => return Ok(coachflow_store::KekSource::Auto),
            (false, false) => {
                return Err(ConfigError::new(
                    "content.kek_file",
                    "give the keys in content.kek or in content.kek_file, not both",
                ));
            }
            (false, true) => (
                "content.kek",
                content.kek.split(',').map(|key| key.trim().to_owned()).collect(),
            ),
            (true, false) => {
                let text = std::fs::read_to_string(&content.kek_file).map_err(|error| {
                    ConfigError::new("content.kek_file", format!("cannot read {}: {error}", content.kek_file))
                })?;
                (
                    "content.kek_file",
                    text.lines().map(|key| key.trim().to_owned()).collect(),
                )
            }
        };
        let keys: Vec<String> = keys.into_iter().filter(|key| !key.is_empty()).collect();
        if keys.is_empty() {
            return Err(ConfigError::new(setting, "holds no key"));
        }
        for (index, key) in keys.iter().enumerate() {
            use base64::Engine as _;
            let length = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|_| ConfigError::new(setting, format!("key {} is not base64", index + 1)))?
                .len();
            if length != 32 {
                return Err(ConfigError::new(
                    setting,
                    format!(
                        "key {} is {length} bytes, not 32 (make one with `coachflow keys generate`)",
                        index + 1
                    ),
                ));
            }
        }
        Ok(coachflow_store::KekSource::Keys(keys))
    }

    fn retention_policies(&self) -> Result<crate::application::privacy::RetentionPolicies, ConfigError> {
        use crate::application::privacy::{RetentionPolicies, RetentionPolicy};
        fn policy(
            prefix: &str,
            closed_content: &str,
            sent_outbox: &str,
            idempotency_keys: &str,
        ) -> Result<RetentionPolicy, ConfigError> {
            let optional = |field: &str, text: &str| {
                if text.is_empty() {
                    return Ok(None);
                }
                let duration = parse_duration(&format!("{prefix}{field}"), text)?;
                if duration.is_zero() {
                    return Err(ConfigError::new(format!("{prefix}{field}"), "must be longer than 0"));
                }
                Ok(Some(duration))
            };
            Ok(RetentionPolicy {
                closed_content: optional("closed_content_after", closed_content)?,
                sent_outbox: optional("sent_outbox_after", sent_outbox)?,
                idempotency_keys: optional("idempotency_keys_after", idempotency_keys)?,
            })
        }
        let retention = &self.retention;
        let default = policy(
            "retention.",
            &retention.closed_content_after,
            &retention.sent_outbox_after,
            &retention.idempotency_keys_after,
        )?;
        let mut tenants = std::collections::BTreeMap::new();
        if !retention.tenants.trim().is_empty() {
            let given: std::collections::BTreeMap<String, TenantRetention> =
                serde_json::from_str(&retention.tenants).map_err(|error| {
                    ConfigError::new(
                        "retention.tenants",
                        format!(
                            "not a JSON object of tenants' policies like {{\"acme\": {{\"closed_content_after\": \"365d\"}}}}: {error}"
                        ),
                    )
                })?;
            for (tenant, given) in given {
                let prefix = format!("retention.tenants.{tenant}.");
                tenants.insert(
                    tenant,
                    policy(
                        &prefix,
                        &given.closed_content_after,
                        &given.sent_outbox_after,
                        &given.idempotency_keys_after,
                    )?,
                );
            }
        }
        Ok(RetentionPolicies { default, tenants })
    }

    fn auth_settings(&self) -> Result<AuthSettings, ConfigError> {
        let auth = &self.auth;
        let given = [
            ("auth.issuer", &auth.issuer),
            ("auth.audience", &auth.audience),
            ("auth.jwks", &auth.jwks),
        ];
        if given.iter().all(|(_, value)| value.is_empty()) {
            let key_file = if auth.local_key.is_empty() {
                local_key_beside(&self.database.url)
            } else {
                std::path::PathBuf::from(&auth.local_key)
            };
            return Ok(AuthSettings::Local { key_file });
        }
        if let Some((setting, _)) = given.iter().find(|(_, value)| value.is_empty()) {
            return Err(ConfigError::new(
                *setting,
                "is required with the other auth settings (auth.issuer, auth.audience and auth.jwks go together)",
            ));
        }
        let jwks = if let Some(path) = auth.jwks.strip_prefix("file://") {
            if path.is_empty() {
                return Err(ConfigError::new("auth.jwks", "file:// names no file"));
            }
            JwksLocation::File(std::path::PathBuf::from(path))
        } else if auth.jwks.starts_with("https://") {
            JwksLocation::Https(auth.jwks.clone())
        } else {
            return Err(ConfigError::new(
                "auth.jwks",
                format!("'{}' is neither an https:// URL nor a file:// path", auth.jwks),
            ));
        };
        if auth.tenant_claim.is_empty() {
            return Err(ConfigError::new("auth.tenant_claim", "must name a claim"));
        }
        Ok(AuthSettings::Issuer {
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            jwks,
            jwks_ca: (!auth.jwks_ca.is_empty()).then(|| std::path::PathBuf::from(&auth.jwks_ca)),
            jwks_cache: parse_duration("auth.jwks_cache", &auth.jwks_cache)?,
            tenant_claim: auth.tenant_claim.clone(),
            leeway: parse_duration("auth.leeway", &auth.leeway)?,
        })
    }

    fn tls_settings(&self) -> Result<Option<TlsSettings>, ConfigError> {
        let tls = &self.server.tls;
        match (tls.cert.is_empty(), tls.key.is_empty()) {
            (true, true) if tls.client_ca.is_empty() => Ok(None),
            (true, true) => Err(ConfigError::new(
                "server.tls.client_ca",
                "mutual TLS needs the server's own server.tls.cert and server.tls.key",
            )),
            (false, true) => Err(ConfigError::new("server.tls.key", "is required with server.tls.cert")),
            (true, false) => Err(ConfigError::new("server.tls.cert", "is required with server.tls.key")),
            (false, false) => Ok(Some(TlsSettings {
                cert: std::path::PathBuf::from(&tls.cert),
                key: std::path::PathBuf::from(&tls.key),
                client_ca: (!tls.client_ca.is_empty()).then(|| std::path::PathBuf::from(&tls.client_ca)),
            })),
        }
    }

    fn relay_settings(&self) -> Result<Option<RelaySettings>, ConfigError> {
        let broker = &self.broker;
        if broker.url.is_empty() {
            return Ok(None);
        }
        coachflow_broker::check_url(&broker.url).map_err(|error| {
            ConfigError::new(
                "broker.url",
                format!("'{}' is not an AMQP URL: {error}", crate::serve::redact(&broker.url)),
            )
        })?;
        coachflow_broker::check_exchange(&broker.exchange)
            .map_err(|error| ConfigError::new("broker.exchange", error))?;
        let mode = broker
            .content_mode
            .parse()
            .map_err(|error| ConfigError::new("broker.content_mode", error))?;
        if broker.batch_size == 0 {
            return Err(ConfigError::new("broker.batch_size", "must be at least 1"));
        }
        let reconnect_min = parse_duration("broker.reconnect_min", &broker.reconnect_min)?;
        let reconnect_max = parse_duration("broker.reconnect_max", &broker.reconnect_max)?;
        if reconnect_max < reconnect_min {
            return Err(ConfigError::new(
                "broker.reconnect_max",
                format!(
                    "must not be shorter than broker.reconnect_min ({})",
                    broker.reconnect_min
                ),
            ));
        }
        let positive = |setting: &str, text: &str| {
            let duration = parse_duration(setting, text)?;
            if duration.is_zero() {
                return Err(ConfigError::new(setting, "must be longer than 0"));
            }
            Ok(duration)
        };
        Ok(Some(RelaySettings {
            url: broker.url.clone(),
            exchange: broker.exchange.clone(),
            mode,
            declare_exchange: broker.declare_exchange,
            owner: self.instance_id.clone(),
            batch_size: broker.batch_size,
            poll_interval: positive("broker.poll_interval", &broker.poll_interval)?,
            lease: positive("broker.lease", &broker.lease)?,
            confirm_timeout: positive("broker.confirm_timeout", &broker.confirm_timeout)?,
            reconnect_min,
            reconnect_max,
        }))
    }
}

/// Local mode's key file: beside a SQLite database file, else in the working directory.
pub fn local_key_beside(database_url: &str) -> std::path::PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split_once('?').map_or(rest, |(path, _)| path))
        .filter(|path| !path.is_empty() && !path.contains(":memory:") && !database_url.contains("mode=memory"));
    match file {
        Some(path) => std::path::PathBuf::from(format!("{path}.token-key")),
        None => std::path::PathBuf::from("coachflow.token-key"),
    }
}

/// `integration,hr` → the audience of those names.
fn audience(text: &str) -> Result<Audience, ConfigError> {
    let names: Vec<&str> = text.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    if let Some(name) = names.iter().find(|name| !coachflow_model::is_valid_key(name)) {
        return Err(ConfigError::new(
            "events.audience",
            format!("'{name}' is not a role key or 'integration'"),
        ));
    }
    Ok(Audience::new(names))
}

fn address(setting: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| ConfigError::new(setting, format!("'{text}' is not an address like 127.0.0.1:50051")))
}

fn cron(setting: &str, schedule: &str) -> Result<(), ConfigError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(schedule)
        .map(|_| ())
        .map_err(|error| {
            ConfigError::new(
                setting,
                format!("'{schedule}' is not a cron schedule with seconds: {error}"),
            )
        })
}

/// `500ms`, `30s`, `10m`, `24h`, `7d`.
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    let invalid = || {
        ConfigError::new(
            setting,
            format!("'{text}' is not a duration like 500ms, 30s, 10m, 24h or 7d"),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs(number.checked_mul(seconds).ok_or_else(invalid)?))
}

/// `database.max_connections` → `COACHFLOW_DATABASE_MAX_CONNECTIONS`.
pub fn env_name(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.replace('.', "_").to_uppercase())
}

fn leaf_paths(value: &Value) -> Vec<String> {
    fn walk(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(child, &path, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

fn merge(base: &mut Value, overlay: Value, prefix: &str) -> Result<(), ConfigError> {
    let Value::Object(overlay) = overlay else {
        return Err(ConfigError::new(
            if prefix.is_empty() { "(file)" } else { prefix },
            "expected a mapping of settings",
        ));
    };
    let Value::Object(base) = base else {
        return Err(ConfigError::new(prefix, "is a single setting, not a section"));
    };
    for (key, value) in overlay {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match base.get_mut(&key) {
            Some(existing @ Value::Object(_)) => merge(existing, value, &path)?,
            Some(existing) => *existing = value,
            None => return Err(ConfigError::new(path, "unknown setting")),
        }
    }
    Ok(())
}

/// Sets a leaf from text, typed like its current value.
fn set(root: &mut Value, path: &str, text: &str, source: &str) -> Result<(), ConfigError> {
    let mut slot = root;
    for key in path.split('.') {
        slot = slot
            .get_mut(key)
            .ok_or_else(|| ConfigError::new(source, "unknown setting"))?;
    }
    *slot = match slot {
        Value::Bool(_) => match text {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => return Err(ConfigError::new(source, format!("'{text}' is not true or false"))),
        },
        Value::Number(_) => Value::Number(
            text.parse::<u64>()
                .map_err(|_| ConfigError::new(source, format!("'{text}' is not a whole number")))?
                .into(),
        ),
        _ => Value::String(text.to_owned()),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_embedded() {
        let settings = Config::load(None, env(&[]), &Vec::new()).unwrap().validate().unwrap();
        assert_eq!(settings.config.database.url, "sqlite://coachflow.db");
        assert_eq!(settings.grpc_listen.port(), 50051);
        assert_eq!(settings.poll_interval, Duration::from_secs(1));
        assert!(!settings.config.instance_id.is_empty());
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("coachflow-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(
            &file,
            "database:\n  url: postgres://file/db\n  max_connections: 4\ngrpc:\n  listen: 0.0.0.0:1\nlog:\n  format: json\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("COACHFLOW_DATABASE_MAX_CONNECTIONS", "9"),
                ("COACHFLOW_GRPC_LISTEN", "0.0.0.0:2"),
                ("PATH", "/bin"),
                ("COACHFLOW_TENANT", "acme"),
                ("COACHFLOW_TEST_POSTGRES_URL", "postgres://elsewhere"),
            ]),
            &vec![("grpc.listen".to_owned(), "0.0.0.0:3".to_owned())],
        )
        .unwrap();
        assert_eq!(config.database.url, "postgres://file/db");
        assert_eq!(config.database.max_connections, 9);
        assert_eq!(config.grpc.listen, "0.0.0.0:3");
        assert_eq!(config.log.format, LogFormat::Json);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_and_mistyped_settings_name_the_setting() {
        let error = Config::load(None, env(&[("COACHFLOW_DATABSE_URL", "x")]), &Vec::new()).unwrap_err();
        assert_eq!(error.setting, "COACHFLOW_DATABSE_URL");
        let error = Config::load(None, env(&[("COACHFLOW_TIMERS_BATCH_SIZE", "many")]), &Vec::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "COACHFLOW_TIMERS_BATCH_SIZE: 'many' is not a whole number"
        );
        let error = Config::load(None, env(&[("COACHFLOW_LOG_FORMAT", "xml")]), &Vec::new()).unwrap_err();
        assert_eq!(error.setting, "log.format");
    }

    #[test]
    fn validation_names_the_setting_at_fault() {
        let check = |path: &str, value: &str| {
            Config::load(None, env(&[]), &vec![(path.to_owned(), value.to_owned())])
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check("database.url", "mysql://x"),
            "database.url: 'mysql://x' is neither a sqlite: nor a postgres:// URL"
        );
        assert!(check("grpc.listen", "localhost").starts_with("grpc.listen: 'localhost' is not an address"));
        assert!(check("timers.lease", "5 minutes").starts_with("timers.lease: '5 minutes' is not a duration"));
        assert!(check("timers.fallback_schedule", "every minute").starts_with("timers.fallback_schedule:"));
        assert_eq!(
            check("database.max_connections", "0"),
            "database.max_connections: must be at least 1"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("x", "7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_duration("x", "s").is_err());
        assert!(parse_duration("x", "10").is_err());
    }

    #[test]
    fn the_relay_runs_only_with_a_broker_url() {
        let settings = Config::load(None, env(&[]), &Vec::new()).unwrap().validate().unwrap();
        assert!(settings.relay.is_none());
        assert_eq!(settings.audience, Audience::new(["integration"]));
        let settings = Config::load(
            None,
            env(&[
                ("COACHFLOW_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
                ("COACHFLOW_BROKER_CONTENT_MODE", "structured"),
                ("COACHFLOW_EVENTS_AUDIENCE", "integration, hr"),
            ]),
            &Vec::new(),
        )
        .unwrap()
        .validate()
        .unwrap();
        let relay = settings.relay.unwrap();
        assert_eq!(relay.exchange, "coachflow.events");
        assert_eq!(relay.mode, coachflow_broker::ContentMode::Structured);
        assert_eq!(relay.owner, settings.config.instance_id);
        assert_eq!(relay.lease, Duration::from_secs(30));
        assert_eq!(settings.audience, Audience::new(["integration", "hr"]));
    }

    #[test]
    fn broker_settings_are_checked() {
        let check = |pairs: &[(&str, &str)]| {
            let mut overrides = vec![("broker.url".to_owned(), "amqp://u:secret@h:5672/%2f".to_owned())];
            overrides.extend(
                pairs
                    .iter()
                    .map(|(path, value)| ((*path).to_owned(), (*value).to_owned())),
            );
            Config::load(None, env(&[]), &overrides)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let error = check(&[("broker.url", "http://u:secret@h/")]);
        assert!(
            error.starts_with("broker.url: 'http://u:***@h/' is not an AMQP URL"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
        assert_eq!(
            check(&[("broker.exchange", "events/all")]),
            "broker.exchange: 'events/all' is not an exchange name (1 to 255 letters, digits, '-', '_', '.' or ':')"
        );
        assert_eq!(
            check(&[("broker.content_mode", "batched")]),
            "broker.content_mode: 'batched' is neither binary nor structured"
        );
        assert_eq!(check(&[("broker.lease", "0s")]), "broker.lease: must be longer than 0");
        assert_eq!(
            check(&[("broker.reconnect_max", "100ms")]),
            "broker.reconnect_max: must not be shorter than broker.reconnect_min (200ms)"
        );
        assert_eq!(
            check(&[("events.audience", "HR team")]),
            "events.audience: 'HR team' is not a role key or 'integration'"
        );
    }

    #[test]
    fn auth_is_all_or_nothing_and_local_mode_is_loopback_only() {
        let check = |pairs: &[(&str, &str)]| {
            let overrides = pairs
                .iter()
                .map(|(path, value)| ((*path).to_owned(), (*value).to_owned()))
                .collect();
            Config::load(None, env(&[]), &overrides).unwrap().validate()
        };
        let settings = check(&[]).unwrap();
        assert_eq!(
            settings.auth,
            AuthSettings::Local {
                key_file: "coachflow.db.token-key".into()
            }
        );
        let error = check(&[("grpc.listen", "0.0.0.0:50051")]).unwrap_err();
        assert_eq!(error.setting, "grpc.listen");
        assert!(error.message.contains("local mode"), "{error}");
        let error = check(&[("auth.issuer", "https://idp.example")]).unwrap_err();
        assert_eq!(error.setting, "auth.audience");
        let error = check(&[
            ("auth.issuer", "https://idp.example"),
            ("auth.audience", "coachflow"),
            ("auth.jwks", "http://idp.example/jwks"),
        ])
        .unwrap_err();
        assert_eq!(error.setting, "auth.jwks");
        let settings = check(&[
            ("auth.issuer", "https://idp.example"),
            ("auth.audience", "coachflow"),
            ("auth.jwks", "file:///etc/coachflow/jwks.json"),
            ("grpc.listen", "0.0.0.0:50051"),
        ])
        .unwrap();
        assert!(matches!(
            settings.auth,
            AuthSettings::Issuer { jwks: JwksLocation::File(ref path), .. } if path == std::path::Path::new("/etc/coachflow/jwks.json")
        ));
        assert_eq!(
            check(&[("server.tls.cert", "cert.pem")]).unwrap_err().setting,
            "server.tls.key"
        );
        assert_eq!(
            check(&[("server.tls.client_ca", "ca.pem")]).unwrap_err().setting,
            "server.tls.client_ca"
        );
        assert_eq!(
            local_key_beside("sqlite:///var/lib/cf/coachflow.db?mode=rwc"),
            std::path::PathBuf::from("/var/lib/cf/coachflow.db.token-key")
        );
        assert_eq!(
            local_key_beside("postgres://h/db"),
            std::path::PathBuf::from("coachflow.token-key")
        );
    }

    #[test]
    fn metrics_can_be_turned_off() {
        let settings = Config::load(None, env(&[("COACHFLOW_METRICS_LISTEN", "")]), &Vec::new())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(settings.metrics_listen, None);
    }
}
