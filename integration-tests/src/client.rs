//! gRPC clients of a test server, acting as a person or a service, and the reads every test
//! needs (an engagement, its whole history, publishing a built-in model).

use coachflow_server::proto::google::longrunning::operations_client::OperationsClient;
use coachflow_server::proto::{
    self, engagement_service_client::EngagementServiceClient, event_service_client::EventServiceClient,
    model_service_client::ModelServiceClient,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::identity::{Claims, SYSTEM_SCOPES};
use crate::server::TestServer;

/// The tenant every test works in.
pub const TENANT: &str = "acme";

/// `tenants/acme`.
pub fn parent() -> String {
    format!("tenants/{TENANT}")
}

/// `tenants/acme/engagements/{id}`.
pub fn engagement_name(id: &str) -> String {
    format!("tenants/{TENANT}/engagements/{id}")
}

/// `{engagement}/tasks/{instance}`.
pub fn task_name(engagement: &str, instance: &str) -> String {
    format!("{engagement}/tasks/{instance}")
}

/// `tenants/acme/models/{key}`.
pub fn model_name(key: &str) -> String {
    format!("tenants/{TENANT}/models/{key}")
}

/// The instance id at the end of a task's resource name.
pub fn instance_of(task_name: &str) -> &str {
    task_name
        .rsplit_once("/tasks/")
        .map_or(task_name, |(_, instance)| instance)
}

/// Adds `authorization: Bearer {token}` to every request (nothing without a token: the
/// local administrator of a server in local mode).
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer(token.map(|token| {
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|_| panic!("'{token}' is not valid metadata"))
        }))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Models = ModelServiceClient<InterceptedService<Channel, Bearer>>;
pub type Engagements = EngagementServiceClient<InterceptedService<Channel, Bearer>>;
pub type Events = EventServiceClient<InterceptedService<Channel, Bearer>>;
pub type Operations = OperationsClient<InterceptedService<Channel, Bearer>>;

/// The actor of requests that name none: the L&D system driving engagements.
pub const SERVICE_ACTOR: &str = "service/lms";

/// The claims of an actor of tenant acme: `person/{id}` (a person, no powers) or
/// `service/{name}` (a system with [`SYSTEM_SCOPES`]).
pub fn actor_claims(actor: &str) -> Claims {
    match actor.split_once('/') {
        Some(("person", id)) => Claims::person(id, TENANT),
        Some(("service", name)) => Claims::system(name, TENANT, &SYSTEM_SCOPES),
        _ => panic!("'{actor}' is neither person/{{id}} nor service/{{name}}"),
    }
}

/// The text of a model in `models/` at the workspace root.
pub fn builtin_source(key: &str) -> String {
    let path = format!("{}/../models/{key}.yaml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

impl TestServer {
    /// A token of `claims`, from the server's issuer at the servers' time; `None` for a
    /// server in local mode.
    pub fn token(&self, claims: &Claims) -> Option<String> {
        self.issuer().map(|issuer| issuer.token(claims, self.now()))
    }

    /// The bearer of `claims` for this server.
    pub fn bearer(&self, claims: &Claims) -> Bearer {
        Bearer::new(self.token(claims).as_deref())
    }

    pub fn models(&self) -> Models {
        self.models_with(&actor_claims(SERVICE_ACTOR))
    }

    pub fn models_with(&self, claims: &Claims) -> Models {
        ModelServiceClient::with_interceptor(self.channel(), self.bearer(claims))
    }

    pub fn engagements(&self) -> Engagements {
        self.engagements_as(SERVICE_ACTOR)
    }

    /// Acting as `person/{id}` or `service/{name}` of tenant acme (see [`actor_claims`]).
    pub fn engagements_as(&self, actor: &str) -> Engagements {
        self.engagements_with(&actor_claims(actor))
    }

    pub fn engagements_with(&self, claims: &Claims) -> Engagements {
        EngagementServiceClient::with_interceptor(self.channel(), self.bearer(claims))
    }

    pub fn operations(&self) -> Operations {
        self.operations_with(&actor_claims(SERVICE_ACTOR))
    }

    pub fn operations_with(&self, claims: &Claims) -> Operations {
        OperationsClient::with_interceptor(self.channel(), self.bearer(claims))
    }

    pub fn events(&self) -> Events {
        self.events_with(&actor_claims(SERVICE_ACTOR))
    }

    pub fn events_with(&self, claims: &Claims) -> Events {
        EventServiceClient::with_interceptor(self.channel(), self.bearer(claims))
    }

    /// Publishes a model from its text.
    pub async fn publish(&self, source: &str) -> proto::Model {
        self.models()
            .create_model(proto::CreateModelRequest {
                parent: parent(),
                source: source.to_owned(),
                format: proto::ModelFormat::Unspecified.into(),
                request_id: String::new(),
            })
            .await
            .unwrap_or_else(|status| panic!("CreateModel failed: {status:?}"))
            .into_inner()
    }

    /// Publishes `models/{key}.yaml`.
    pub async fn publish_builtin(&self, key: &str) -> proto::Model {
        let model = self.publish(&builtin_source(key)).await;
        assert_eq!(model.name, model_name(key));
        model
    }

    /// Starts an engagement with a client, a coach, a sponsor, HR and `stakeholders`
    /// stakeholders (`client-1`, `coach-1`, `sponsor-1`, `hr-1`, `stakeholder-{n}`), in the
    /// roles the model has.
    pub async fn create_engagement(&self, model: &proto::Model, id: &str, stakeholders: usize) -> proto::Engagement {
        let mut people = Vec::new();
        for role in &model.roles {
            let persons: Vec<String> = if role.multiple {
                (1..=stakeholders).map(|n| format!("{}-{n}", role.key)).collect()
            } else {
                vec![format!("{}-1", role.key)]
            };
            if !persons.is_empty() {
                people.push(proto::RoleBinding {
                    role: role.key.clone(),
                    people: persons,
                });
            }
        }
        self.engagements()
            .create_engagement(proto::CreateEngagementRequest {
                parent: parent(),
                engagement_id: id.to_owned(),
                model: model.name.clone(),
                model_version: 0,
                timezone: "Europe/Berlin".to_owned(),
                people,
                request_id: String::new(),
            })
            .await
            .unwrap_or_else(|status| panic!("CreateEngagement {id} failed: {status:?}"))
            .into_inner()
    }

    pub async fn get_engagement(&self, name: &str) -> proto::Engagement {
        self.engagements()
            .get_engagement(proto::GetEngagementRequest { name: name.to_owned() })
            .await
            .unwrap_or_else(|status| panic!("GetEngagement {name} failed: {status:?}"))
            .into_inner()
    }

    /// Every event of an engagement's history, read page by page.
    pub async fn history(&self, name: &str) -> Vec<proto::HistoryEvent> {
        let mut client = self.engagements();
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .get_history(proto::GetHistoryRequest {
                    name: name.to_owned(),
                    page_size: 1000,
                    page_token,
                })
                .await
                .unwrap_or_else(|status| panic!("GetHistory {name} failed: {status:?}"))
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return events;
            }
            page_token = page.next_page_token;
        }
    }

    /// Every engagement of the tenant that `request` (its parent and page fields set here)
    /// selects, read page by page.
    pub async fn list_engagements(&self, request: proto::ListEngagementsRequest) -> Vec<proto::Engagement> {
        let mut client = self.engagements();
        let mut engagements = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_engagements(proto::ListEngagementsRequest {
                    parent: parent(),
                    page_size: 100,
                    page_token,
                    ..request.clone()
                })
                .await
                .unwrap_or_else(|status| panic!("ListEngagements {request:?} failed: {status:?}"))
                .into_inner();
            engagements.extend(page.engagements);
            if page.next_page_token.is_empty() {
                return engagements;
            }
            page_token = page.next_page_token;
        }
    }

    /// A person's queue, read page by page.
    pub async fn list_tasks(&self, assignee: &str, queue: proto::list_tasks_request::Queue) -> Vec<proto::Task> {
        let mut client = self.engagements();
        let mut tasks = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_tasks(proto::ListTasksRequest {
                    parent: parent(),
                    assignee: assignee.to_owned(),
                    queue: queue.into(),
                    page_size: 100,
                    page_token,
                })
                .await
                .unwrap_or_else(|status| panic!("ListTasks {assignee} failed: {status:?}"))
                .into_inner();
            tasks.extend(page.tasks);
            if page.next_page_token.is_empty() {
                return tasks;
            }
            page_token = page.next_page_token;
        }
    }

    /// The answer to `GET /metrics`.
    pub async fn scrape_metrics(&self) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let address = self.metrics_address().expect("the metrics endpoint is on");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to the metrics endpoint {address}: {error}"));
        stream
            .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("send the metrics request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read the metrics response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
        assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics answered {head}");
        body.to_owned()
    }
}

/// The value of the sample of `metric` whose labels include every `labels` pair, from a
/// Prometheus text exposition.
pub fn metric_value(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let has_all = labels
            .iter()
            .all(|(name, wanted)| label_text.split(',').any(|pair| pair == format!("{name}=\"{wanted}\"")));
        if has_all { value.trim().parse().ok() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_found_by_labels() {
        let text = "# TYPE x counter\nx_total{method=\"A\",code=\"OK\"} 3\nx_total{method=\"B\",code=\"OK\"} 1\ny 2\n";
        assert_eq!(
            metric_value(text, "x_total", &[("code", "OK"), ("method", "A")]),
            Some(3.0)
        );
        assert_eq!(metric_value(text, "x_total", &[("method", "C")]), None);
        assert_eq!(metric_value(text, "y", &[]), Some(2.0));
    }

    #[test]
    fn instance_ids_come_from_task_names() {
        assert_eq!(
            instance_of("tenants/acme/engagements/e/tasks/interview~p-1"),
            "interview~p-1"
        );
    }
}
