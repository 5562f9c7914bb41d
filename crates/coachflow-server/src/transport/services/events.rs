//! `coachflow.v1.EventService`: public events streamed from the outbox.
//!
//! Outbox positions are assigned when a row is inserted, but transactions commit in their
//! own order, so position 41 may become visible after 42. A stream therefore reads the
//! outbox in position order and, at a hole, waits (up to [`GAP_WAIT`]) for the transaction
//! that holds it to commit before passing it by (a rolled-back transaction leaves a hole
//! forever). Consumers resume from the last position they received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coachflow_broker::CloudEvent;
use coachflow_broker::cloudevents::SPEC_VERSION;
use coachflow_store::OutboxRow;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{observe, principal};
use crate::application::{AppError, Core, EngagementName, EventsGrant, Method, TenantName};
use crate::proto::{self, event_service_server::EventService};
use crate::transport::convert;

/// How long a stream waits at a hole in the positions before passing it by.
pub const GAP_WAIT: Duration = Duration::from_secs(2);
/// How often an idle stream looks for events committed by other replicas.
const IDLE_POLL: Duration = Duration::from_millis(500);
const BATCH: u64 = 500;

#[derive(Debug, Clone)]
pub struct EventApi {
    core: Arc<Core>,
    shutdown: watch::Receiver<bool>,
}

impl EventApi {
    pub fn new(core: Arc<Core>, shutdown: watch::Receiver<bool>) -> EventApi {
        EventApi { core, shutdown }
    }
}

/// What a stream delivers.
#[derive(Debug, Clone)]
struct Selection {
    tenant: String,
    engagement: Option<String>,
    types: Vec<String>,
    /// What the caller may see of the events.
    grant: EventsGrant,
}

impl Selection {
    fn wants(&self, row: &OutboxRow) -> bool {
        row.tenant == self.tenant
            && self
                .engagement
                .as_ref()
                .is_none_or(|engagement| *engagement == row.engagement)
            && (self.types.is_empty() || self.types.contains(&row.event_type))
    }
}

/// The `WatchEvents` item of a row: its CloudEvent, with outputs as the caller may see them.
fn public_event(row: &OutboxRow, grant: &EventsGrant) -> proto::PublicEvent {
    let event = CloudEvent::of(row);
    let data = match serde_json::from_str::<serde_json::Value>(&event.data) {
        Ok(serde_json::Value::Object(mut map)) => {
            if let EventsGrant::Engagement { viewer, model } = grant {
                // A person watching their engagement sees outputs as their roles allow.
                let task = map.get("key").and_then(serde_json::Value::as_str).map(str::to_owned);
                if let (Some(task), Some(serde_json::Value::Object(outputs))) = (task, map.get_mut("outputs")) {
                    outputs.retain(|key, _| viewer.sees_task_output(model, &task, key));
                }
            }
            convert::json_to_struct(&map)
        }
        _ => prost_types::Struct::default(),
    };
    proto::PublicEvent {
        position: row.position,
        id: event.id,
        source: event.source,
        r#type: event.event_type,
        subject: event.subject,
        time: Some(convert::timestamp(event.time)),
        spec_version: SPEC_VERSION.to_owned(),
        sequence: row.sequence,
        data: Some(data),
    }
}

type Sender = mpsc::Sender<Result<proto::PublicEvent, Status>>;

/// Feeds one stream until the client goes away or the server shuts down.
async fn pump(
    core: Arc<Core>,
    selection: Selection,
    mut position: u64,
    sender: Sender,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut commits = core.watch_commits();
    let mut hole_since: Option<Instant> = None;
    loop {
        commits.borrow_and_update();
        let rows = match core.store().read_outbox_all(position, BATCH).await {
            Ok(rows) => rows,
            Err(error) => {
                let _ = sender.send(Err(AppError::from(error).into())).await;
                return;
            }
        };
        let fetched = rows.len();
        let mut waiting_at_hole = false;
        for row in &rows {
            if row.position != position + 1 {
                let since = *hole_since.get_or_insert_with(Instant::now);
                if since.elapsed() < GAP_WAIT {
                    waiting_at_hole = true;
                    break;
                }
            }
            hole_since = None;
            position = row.position;
            if selection.wants(row) && sender.send(Ok(public_event(row, &selection.grant))).await.is_err() {
                return;
            }
        }
        if fetched as u64 == BATCH && !waiting_at_hole {
            continue;
        }
        let pause = if waiting_at_hole {
            Duration::from_millis(20)
        } else {
            IDLE_POLL
        };
        let stopping = tokio::select! {
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => true,
            () = sender.closed() => return,
            _ = commits.changed(), if !waiting_at_hole => false,
            () = tokio::time::sleep(pause) => false,
        };
        if stopping {
            let _ = sender
                .send(Err(Status::unavailable(format!(
                    "the server is shutting down; resume with start_position {position}"
                ))))
                .await;
            return;
        }
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchEventsStream = ReceiverStream<Result<proto::PublicEvent, Status>>;

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let method = Method::named("coachflow.v1.EventService/WatchEvents");
        let principal = principal(&request).map_err(Status::from)?;
        let started = observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let engagement = if request.engagement.is_empty() {
                None
            } else {
                let name = EngagementName::parse("engagement", &request.engagement)?;
                if name.tenant != tenant.tenant {
                    return Err(AppError::invalid("engagement", "belongs to another tenant than parent"));
                }
                Some(name)
            };
            for (index, event_type) in request.types.iter().enumerate() {
                if !event_type.starts_with("dev.coachflow.") {
                    return Err(AppError::invalid(
                        format!("types[{index}]"),
                        format!("'{event_type}' is not a Coachflow event type such as dev.coachflow.task.completed.v1"),
                    ));
                }
            }
            let grant = self
                .core
                .events(&principal, method, &tenant.tenant, engagement.as_ref())
                .await?;
            Ok((
                Selection {
                    tenant: tenant.tenant,
                    engagement: engagement.map(|name| name.id),
                    types: request.types,
                    grant,
                },
                request.start_position,
            ))
        })
        .await?;
        let (selection, start) = started.into_inner();
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(pump(
            Arc::clone(&self.core),
            selection,
            start,
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
