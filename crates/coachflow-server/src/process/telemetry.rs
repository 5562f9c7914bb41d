//! Logs and traces. Logs: tracing to stderr, human-readable or JSON lines; colour only on a
//! terminal (and never with `NO_COLOR` set); `auto`, the default, writes JSON when stderr is
//! not a terminal. Traces: with `telemetry.otlp.endpoint` set, the same spans are exported
//! over OTLP/gRPC (batched, on a thread of their own); without it no exporter exists and a
//! span costs what it costs for the logs.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// The service's name in exported traces.
const SERVICE_NAME: &str = "coachflow";

/// What was installed; [`Telemetry::shutdown`] sends the spans still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (a no-op without one).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(error = %error, "cannot export the last spans");
        }
    }
}

/// Installs the global tracing subscriber. `RUST_LOG`, when set, wins over `log.level`. With
/// `otlp_endpoint`, must run inside a Tokio runtime (the exporter's channel lives there).
pub fn init(config: &LogConfig, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|filter| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.level));
    let terminal = std::io::stderr().is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let json = match config.format {
        LogFormat::Auto => !terminal,
        LogFormat::Human => false,
        LogFormat::Json => true,
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    // JSON lines carry the fields of every enclosing span (`spans`): the request's trace id,
    // the command's engagement.
    let logs = if json {
        logs.json().flatten_event(true).with_current_span(false).boxed()
    } else {
        logs.boxed()
    };
    let provider = otlp_endpoint.map(exporter).transpose()?;
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_tracked_inactivity(false)
    });
    // A second initialisation (tests running several servers in one process) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    if let Some(endpoint) = otlp_endpoint {
        tracing::info!(endpoint = %endpoint, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

fn exporter(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint);
    if endpoint.starts_with("https://") {
        builder = builder.with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
    }
    let exporter = builder
        .build()
        .with_context(|| format!("telemetry.otlp.endpoint: cannot export to {endpoint}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(SERVICE_NAME)
                .build(),
        )
        .build())
}
