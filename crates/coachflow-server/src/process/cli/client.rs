//! `coachflow client ...`: a small gRPC client for trying the service from a shell.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::proto::google::longrunning::{self, operations_client::OperationsClient};
use crate::proto::{
    self, engagement_service_client::EngagementServiceClient, event_service_client::EventServiceClient,
    model_service_client::ModelServiceClient,
};
use crate::transport::convert::{json_to_struct, rfc3339, value_to_json};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// Prints a line; a closed stdout (`coachflow client history x | head`) is not an error.
macro_rules! out {
    ($($argument:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($argument)*);
    }};
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The server's address.
    #[arg(long, env = "COACHFLOW_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The tenant to work in.
    #[arg(long, env = "COACHFLOW_TENANT", default_value = "default")]
    tenant: String,
    /// A bearer token to call with (see `coachflow token`); without one, a server in local
    /// mode takes the call as its local administrator.
    #[arg(long, env = "COACHFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM file of the CA that signed the server's certificate, for an https:// server.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Publishes a model file as a new version.
    Publish {
        file: PathBuf,
    },
    /// Lists the tenant's models.
    Models,
    /// Deprecates a model version (MODEL@VERSION): no new engagement starts on it.
    Deprecate {
        version: String,
    },
    /// Undoes a deprecation (MODEL@VERSION).
    Undeprecate {
        version: String,
    },
    /// What changed between two versions of a model.
    Diff {
        model: String,
        from: u32,
        to: u32,
    },
    /// Starts an engagement.
    Start {
        /// The model's key.
        #[arg(long)]
        model: String,
        /// The model version; the latest when omitted.
        #[arg(long)]
        version: Option<u32>,
        /// The engagement's id; generated when omitted.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        timezone: Option<String>,
        /// ROLE=PERSON, repeatable.
        #[arg(long = "person", value_name = "ROLE=PERSON", required = true)]
        people: Vec<String>,
    },
    /// Shows an engagement: state, phase, gate and open tasks.
    Show {
        engagement: String,
    },
    /// Completes a task. Outputs are KEY=VALUE; VALUE is read as JSON when it parses, else as text.
    Complete {
        engagement: String,
        task: String,
        #[arg(long = "output", value_name = "KEY=VALUE")]
        outputs: Vec<String>,
    },
    /// Skips an optional task.
    Skip {
        engagement: String,
        task: String,
        #[arg(long)]
        reason: String,
    },
    /// Binds another person to a role.
    AddParticipant {
        engagement: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        person: String,
    },
    /// Signs off the current phase for an approval role.
    SignOff {
        engagement: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        person: String,
    },
    /// Records a goal.
    Goal {
        engagement: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        title: String,
    },
    /// Leaves the current phase (for phases that wait for it).
    Advance {
        engagement: String,
    },
    /// Repair: reopens a completed or skipped task, with a reason.
    Reopen {
        engagement: String,
        task: String,
        #[arg(long)]
        reason: String,
    },
    /// Repair: moves the engagement to another phase without completing this one.
    MoveTo {
        engagement: String,
        #[arg(long)]
        phase: String,
        #[arg(long)]
        reason: String,
    },
    /// Repair: withdraws a role's sign-off of the current phase.
    WithdrawSignOff {
        engagement: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        reason: String,
    },
    /// Moves an engagement to another version of its model.
    Migrate {
        engagement: String,
        /// The version to move to.
        #[arg(long)]
        to: u32,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        mapping: MappingArgs,
        /// Only say what would happen (or what blocks it).
        #[arg(long)]
        dry_run: bool,
    },
    /// Moves every active or suspended engagement of a model version to another one, as a
    /// long-running operation.
    MigrateAll {
        #[arg(long)]
        model: String,
        #[arg(long)]
        from: u32,
        #[arg(long)]
        to: u32,
        /// Only engagements now in this phase.
        #[arg(long = "in-phase")]
        in_phase: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        mapping: MappingArgs,
        #[arg(long)]
        dry_run: bool,
        /// Wait for the operation to finish and print each engagement's outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Shows a long-running operation (its name or id).
    Operation {
        name: String,
    },
    Suspend {
        engagement: String,
    },
    Resume {
        engagement: String,
    },
    Cancel {
        engagement: String,
    },
    /// A person's open tasks across engagements.
    Tasks {
        #[arg(long)]
        assignee: String,
    },
    /// An engagement's audit timeline.
    History {
        engagement: String,
    },
    /// Streams public events until interrupted.
    Watch {
        /// Start after this position.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
}

/// How the old version's phases and tasks become the new one's.
#[derive(Debug, Args)]
struct MappingArgs {
    /// A renamed phase, OLD=NEW; repeatable.
    #[arg(long = "phase", value_name = "OLD=NEW")]
    phases: Vec<String>,
    /// A renamed task, OLD=NEW; repeatable.
    #[arg(long = "task", value_name = "OLD=NEW")]
    tasks: Vec<String>,
    /// A removed task whose unfinished work is skipped; repeatable.
    #[arg(long = "skip-removed", value_name = "TASK")]
    skip: Vec<String>,
    /// A removed task whose unfinished work is cancelled; repeatable.
    #[arg(long = "cancel-removed", value_name = "TASK")]
    cancel: Vec<String>,
    /// What becomes of the unfinished work of other removed tasks: skip or cancel.
    #[arg(long, value_name = "skip|cancel")]
    otherwise: Option<String>,
}

impl MappingArgs {
    fn to_proto(&self) -> Result<proto::MigrationMapping, tonic::Status> {
        let pairs = |flag: &str, values: &[String]| {
            values
                .iter()
                .map(|value| {
                    value
                        .split_once('=')
                        .map(|(from, to)| (from.to_owned(), to.to_owned()))
                        .ok_or_else(|| tonic::Status::invalid_argument(format!("--{flag} '{value}' is not OLD=NEW")))
                })
                .collect::<Result<_, _>>()
        };
        let removed = self
            .skip
            .iter()
            .map(|task| (task.clone(), proto::RemovedWork::Skip as i32))
            .chain(
                self.cancel
                    .iter()
                    .map(|task| (task.clone(), proto::RemovedWork::Cancel as i32)),
            )
            .collect();
        let otherwise = match self.otherwise.as_deref() {
            None => proto::RemovedWork::Unspecified,
            Some("skip") => proto::RemovedWork::Skip,
            Some("cancel") => proto::RemovedWork::Cancel,
            Some(other) => {
                return Err(tonic::Status::invalid_argument(format!(
                    "--otherwise '{other}' is neither skip nor cancel"
                )));
            }
        };
        Ok(proto::MigrationMapping {
            phases: pairs("phase", &self.phases)?,
            tasks: pairs("task", &self.tasks)?,
            removed,
            otherwise: otherwise as i32,
        })
    }
}

struct Client {
    tenant: String,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    channel: Channel,
}

impl Client {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        request
    }

    fn engagement(&self, id: &str) -> String {
        if id.starts_with("tenants/") {
            id.to_owned()
        } else {
            format!("tenants/{}/engagements/{id}", self.tenant)
        }
    }

    fn engagements(&self) -> EngagementServiceClient<Channel> {
        EngagementServiceClient::new(self.channel.clone())
    }
}

pub(crate) fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut endpoint = Channel::from_shared(args.server.clone())
            .with_context(|| format!("'{}' is not a server address", args.server))?;
        if let Some(ca) = &args.ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                )
                .context("cannot set up TLS")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the server at {}", args.server))?;
        let authorization = args
            .token
            .as_deref()
            .map(|token| format!("Bearer {}", token.trim()).parse())
            .transpose()
            .context("--token must be ASCII")?;
        let client = Client {
            tenant: args.tenant.clone(),
            authorization,
            channel,
        };
        match execute(&client, args.command).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(status) => {
                use tonic_types::StatusExt as _;
                let reason = status
                    .get_details_error_info()
                    .map(|info| format!(" ({})", info.reason))
                    .unwrap_or_default();
                eprintln!("error: {:?}{reason}: {}", status.code(), status.message());
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

async fn execute(client: &Client, command: ClientCommand) -> Result<(), tonic::Status> {
    let parent = format!("tenants/{}", client.tenant);
    let mut engagements = client.engagements();
    let engagement = match command {
        ClientCommand::Publish { file } => {
            let source = std::fs::read_to_string(&file)
                .map_err(|error| tonic::Status::invalid_argument(format!("cannot read {}: {error}", file.display())))?;
            let model = ModelServiceClient::new(client.channel.clone())
                .create_model(client.request(proto::CreateModelRequest {
                    parent,
                    source,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            out!(
                "published {} version {} ({})",
                model.name,
                model.version,
                model.display_name
            );
            return Ok(());
        }
        ClientCommand::Models => {
            let models = ModelServiceClient::new(client.channel.clone())
                .list_models(client.request(proto::ListModelsRequest {
                    parent,
                    page_size: 1000,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            for model in models.models {
                out!("{} version {}: {}", model.name, model.version, model.display_name);
            }
            return Ok(());
        }
        ClientCommand::Deprecate { version } => return set_deprecated(client, &parent, &version, true).await,
        ClientCommand::Undeprecate { version } => return set_deprecated(client, &parent, &version, false).await,
        ClientCommand::Diff { model, from, to } => {
            let diff = ModelServiceClient::new(client.channel.clone())
                .diff_model_versions(client.request(proto::DiffModelVersionsRequest {
                    name: format!("{parent}/models/{model}"),
                    from_version: from,
                    to_version: to,
                }))
                .await?
                .into_inner();
            for change in &diff.changes {
                let impact = proto::model_change::Impact::try_from(change.impact)
                    .map(|impact| impact.as_str_name())
                    .unwrap_or("?");
                out!("[{impact}] {}: {}", change.path, change.description);
            }
            out!("compatible: {}", diff.compatible);
            return Ok(());
        }
        ClientCommand::Start {
            model,
            version,
            id,
            timezone,
            people,
        } => {
            let mut bindings: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for binding in &people {
                let (role, person) = binding.split_once('=').ok_or_else(|| {
                    tonic::Status::invalid_argument(format!("--person '{binding}' is not ROLE=PERSON"))
                })?;
                bindings.entry(role.to_owned()).or_default().push(person.to_owned());
            }
            engagements
                .create_engagement(
                    client.request(proto::CreateEngagementRequest {
                        parent,
                        engagement_id: id.unwrap_or_default(),
                        model,
                        model_version: version.unwrap_or(0),
                        timezone: timezone.unwrap_or_default(),
                        people: bindings
                            .into_iter()
                            .map(|(role, people)| proto::RoleBinding { role, people })
                            .collect(),
                        request_id: String::new(),
                    }),
                )
                .await?
        }
        ClientCommand::Show { engagement } => {
            engagements
                .get_engagement(client.request(proto::GetEngagementRequest {
                    name: client.engagement(&engagement),
                }))
                .await?
        }
        ClientCommand::Complete {
            engagement,
            task,
            outputs,
        } => {
            let mut values = BTreeMap::new();
            for output in &outputs {
                let (key, value) = output
                    .split_once('=')
                    .ok_or_else(|| tonic::Status::invalid_argument(format!("--output '{output}' is not KEY=VALUE")))?;
                let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::from(value));
                values.insert(key.to_owned(), value);
            }
            engagements
                .complete_task(client.request(proto::CompleteTaskRequest {
                    name: format!("{}/tasks/{task}", client.engagement(&engagement)),
                    outputs: Some(json_to_struct(&values)),
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Skip {
            engagement,
            task,
            reason,
        } => {
            engagements
                .skip_task(client.request(proto::SkipTaskRequest {
                    name: format!("{}/tasks/{task}", client.engagement(&engagement)),
                    reason,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::AddParticipant {
            engagement,
            role,
            person,
        } => {
            engagements
                .add_participant(client.request(proto::AddParticipantRequest {
                    engagement: client.engagement(&engagement),
                    role,
                    person,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::SignOff {
            engagement,
            role,
            person,
        } => {
            engagements
                .sign_off_phase(client.request(proto::SignOffPhaseRequest {
                    engagement: client.engagement(&engagement),
                    role,
                    person,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Goal { engagement, id, title } => {
            engagements
                .record_goal(client.request(proto::RecordGoalRequest {
                    engagement: client.engagement(&engagement),
                    goal_id: id,
                    title,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Advance { engagement } => {
            engagements
                .advance_phase(client.request(proto::AdvancePhaseRequest {
                    engagement: client.engagement(&engagement),
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Reopen {
            engagement,
            task,
            reason,
        } => {
            engagements
                .reopen_task(client.request(proto::ReopenTaskRequest {
                    name: format!("{}/tasks/{task}", client.engagement(&engagement)),
                    reason,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::MoveTo {
            engagement,
            phase,
            reason,
        } => {
            engagements
                .move_to_phase(client.request(proto::MoveToPhaseRequest {
                    engagement: client.engagement(&engagement),
                    phase,
                    reason,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::WithdrawSignOff {
            engagement,
            role,
            reason,
        } => {
            engagements
                .withdraw_sign_off(client.request(proto::WithdrawSignOffRequest {
                    engagement: client.engagement(&engagement),
                    role,
                    reason,
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Migrate {
            engagement,
            to,
            reason,
            mapping,
            dry_run,
        } => {
            let response = engagements
                .migrate_engagement(client.request(proto::MigrateEngagementRequest {
                    engagement: client.engagement(&engagement),
                    to_version: to,
                    mapping: Some(mapping.to_proto()?),
                    reason,
                    validate_only: dry_run,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            for conflict in &response.conflicts {
                out!("conflict {}: {}", conflict.path, conflict.message);
            }
            for step in &response.plan {
                out!("plan: {step}");
            }
            if let Some(engagement) = &response.engagement {
                print_engagement(engagement);
            }
            return Ok(());
        }
        ClientCommand::MigrateAll {
            model,
            from,
            to,
            in_phase,
            reason,
            mapping,
            dry_run,
            wait,
        } => {
            let operation = engagements
                .migrate_engagements(client.request(proto::MigrateEngagementsRequest {
                    parent,
                    model,
                    from_version: from,
                    to_version: to,
                    phase: in_phase.unwrap_or_default(),
                    mapping: Some(mapping.to_proto()?),
                    reason,
                    validate_only: dry_run,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            out!("started {}", operation.name);
            let operation = if wait {
                wait_for(client, &operation.name).await?
            } else {
                operation
            };
            print_operation(&operation);
            return Ok(());
        }
        ClientCommand::Operation { name } => {
            let name = if name.starts_with("tenants/") {
                name
            } else {
                format!("tenants/{}/operations/{name}", client.tenant)
            };
            let operation = OperationsClient::new(client.channel.clone())
                .get_operation(client.request(longrunning::GetOperationRequest { name }))
                .await?
                .into_inner();
            print_operation(&operation);
            return Ok(());
        }
        ClientCommand::Suspend { engagement } => {
            engagements
                .suspend_engagement(client.request(proto::SuspendEngagementRequest {
                    name: client.engagement(&engagement),
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Resume { engagement } => {
            engagements
                .resume_engagement(client.request(proto::ResumeEngagementRequest {
                    name: client.engagement(&engagement),
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Cancel { engagement } => {
            engagements
                .cancel_engagement(client.request(proto::CancelEngagementRequest {
                    name: client.engagement(&engagement),
                    ..Default::default()
                }))
                .await?
        }
        ClientCommand::Tasks { assignee } => {
            let tasks = engagements
                .list_tasks(client.request(proto::ListTasksRequest {
                    parent,
                    assignee,
                    page_size: 1000,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            for task in tasks.tasks {
                out!("{}{}", task.name, due(&task));
            }
            return Ok(());
        }
        ClientCommand::History { engagement } => {
            let mut page_token = String::new();
            loop {
                let page = engagements
                    .get_history(client.request(proto::GetHistoryRequest {
                        name: client.engagement(&engagement),
                        page_size: 1000,
                        page_token,
                    }))
                    .await?
                    .into_inner();
                for event in &page.events {
                    let details = event
                        .details
                        .as_ref()
                        .map(|details| {
                            let map: serde_json::Map<String, serde_json::Value> = details
                                .fields
                                .iter()
                                .map(|(key, value)| (key.clone(), value_to_json(value)))
                                .collect();
                            serde_json::Value::Object(map).to_string()
                        })
                        .unwrap_or_default();
                    let withheld = if event.withheld_fields.is_empty() {
                        String::new()
                    } else {
                        format!(" withheld: {}", event.withheld_fields.join(", "))
                    };
                    out!(
                        "{:>5} {} {:<24} {:<16} {details}{withheld}",
                        event.sequence,
                        time(event.time.as_ref()),
                        event.r#type,
                        event.actor
                    );
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
        ClientCommand::Watch { from } => {
            let mut stream = EventServiceClient::new(client.channel.clone())
                .watch_events(client.request(proto::WatchEventsRequest {
                    parent,
                    start_position: from,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            while let Some(event) = stream.message().await? {
                out!(
                    "{:>6} {} {} {}",
                    event.position,
                    time(event.time.as_ref()),
                    event.r#type,
                    event.subject
                );
            }
            return Ok(());
        }
    };
    print_engagement(&engagement.into_inner());
    Ok(())
}

/// Deprecates a model version (MODEL@VERSION), or undoes it.
async fn set_deprecated(client: &Client, parent: &str, version: &str, deprecated: bool) -> Result<(), tonic::Status> {
    if !version.contains('@') {
        return Err(tonic::Status::invalid_argument(format!(
            "'{version}' is not MODEL@VERSION"
        )));
    }
    let name = format!("{parent}/models/{version}");
    let mut models = ModelServiceClient::new(client.channel.clone());
    if deprecated {
        let model = models
            .deprecate_model_version(client.request(proto::DeprecateModelVersionRequest { name }))
            .await?
            .into_inner();
        out!("deprecated {}@{}", model.name, model.version);
    } else {
        let model = models
            .undeprecate_model_version(client.request(proto::UndeprecateModelVersionRequest { name }))
            .await?
            .into_inner();
        out!("{}@{} may start engagements again", model.name, model.version);
    }
    Ok(())
}

/// Waits for an operation to finish, a minute at a time.
async fn wait_for(client: &Client, name: &str) -> Result<longrunning::Operation, tonic::Status> {
    let mut operations = OperationsClient::new(client.channel.clone());
    loop {
        let operation = operations
            .wait_operation(client.request(longrunning::WaitOperationRequest {
                name: name.to_owned(),
                timeout: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
            }))
            .await?
            .into_inner();
        if operation.done {
            return Ok(operation);
        }
    }
}

fn print_operation(operation: &longrunning::Operation) {
    use prost::Message as _;
    let metadata = operation
        .metadata
        .as_ref()
        .and_then(|any| proto::MigrateEngagementsMetadata::decode(any.value.as_slice()).ok())
        .unwrap_or_default();
    out!(
        "{} {}: {} engagements, {} migrated, {} already migrated, {} would migrate, {} conflicts, {} failed, {} pending",
        operation.name,
        if operation.done { "done" } else { "running" },
        metadata.total,
        metadata.migrated,
        metadata.already_migrated,
        metadata.would_migrate,
        metadata.conflicts,
        metadata.failed,
        metadata.pending
    );
    match &operation.result {
        Some(longrunning::operation::Result::Error(status)) => out!("error {}: {}", status.code, status.message),
        Some(longrunning::operation::Result::Response(any)) => {
            let response = proto::MigrateEngagementsResponse::decode(any.value.as_slice()).unwrap_or_default();
            for result in response.results {
                let outcome = proto::engagement_migration::Outcome::try_from(result.outcome)
                    .map(|outcome| outcome.as_str_name())
                    .unwrap_or("?");
                out!("  {} {outcome}{}", result.engagement, result.error);
                for conflict in result.conflicts {
                    out!("    conflict {}: {}", conflict.path, conflict.message);
                }
            }
        }
        None => {}
    }
}

fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|at| chrono::DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0)))
        .map(rfc3339)
        .unwrap_or_default()
}

fn due(task: &proto::Task) -> String {
    let mut text = String::new();
    if let Some(due) = task.due_time.as_ref() {
        text.push_str(&format!(" due {}", time(Some(due))));
    }
    if task.overdue {
        text.push_str(" OVERDUE");
    } else if task.due_soon {
        text.push_str(" due soon");
    }
    text
}

fn print_engagement(engagement: &proto::Engagement) {
    let state = proto::engagement::State::try_from(engagement.state)
        .map(|state| state.as_str_name())
        .unwrap_or("?");
    out!(
        "{} ({} v{}) {state}, {} events, etag {}",
        engagement.name,
        engagement.model,
        engagement.model_version,
        engagement.event_count,
        engagement.etag
    );
    if let Some(phase) = &engagement.phase {
        out!(
            "phase: {} ({}), iteration {}",
            phase.key,
            phase.display_name,
            phase.iteration
        );
        if let Some(gate) = &phase.gate {
            if gate.satisfied {
                out!("  gate: satisfied");
            } else {
                if !gate.unfinished_tasks.is_empty() {
                    out!("  gate waits for tasks: {}", gate.unfinished_tasks.join(", "));
                }
                if !gate.missing_sign_offs.is_empty() {
                    out!("  gate waits for sign-off by: {}", gate.missing_sign_offs.join(", "));
                }
                if !gate.condition_error.is_empty() {
                    out!("  gate condition: {}", gate.condition_error);
                }
            }
        }
    }
    for task in &engagement.tasks {
        let state = proto::task::State::try_from(task.state)
            .map(|state| state.as_str_name())
            .unwrap_or("?");
        let id = task.name.rsplit('/').next().unwrap_or_default();
        let assignee = if task.assignee.is_empty() {
            String::new()
        } else {
            format!(" -> {}", task.assignee)
        };
        out!(
            "  task {id:<28} {state:<9} {}{assignee}{}",
            task.display_name,
            due(task)
        );
    }
    for goal in &engagement.goals {
        let title = if goal.withheld_fields.iter().any(|field| field == "title") {
            "title withheld"
        } else {
            goal.title.as_str()
        };
        out!("  goal {}: {}% ({title})", goal.id, goal.progress);
    }
    for milestone in &engagement.milestones {
        out!(
            "  milestone {} reached {}",
            milestone.key,
            time(milestone.reach_time.as_ref())
        );
    }
}
