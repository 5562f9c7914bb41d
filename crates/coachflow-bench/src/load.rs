//! The load generator: `concurrency` clients start `engagements` engagements of one model
//! over gRPC and drive each to COMPLETED the way its people would, timing every command.
//!
//! A client takes an engagement and drives it until it is done or waits for a timer (a
//! repeating session's next occurrence, a phase-down period): then it *parks* it and takes
//! another. The servers' clock is a file the generator writes; it stands still while any
//! engagement can move. When every engagement not yet done is parked, the generator moves
//! the clock to the earliest time one waits for, waits until the server's timer runner has
//! fired that many timers (its `coachflow_timers_fired_total`), and the parked engagements
//! due by then are driven on. So the run contains the timer firings too, as a real day of
//! engagements does, and the figures are the whole run's.
//!
//! With a RabbitMQ consumer attached ([`crate::lag`]), every command's acknowledgement time
//! is kept per event it appended (the reply's `event_count` tells which), for the lag from
//! acknowledgement to receipt.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, Utc};
use coachflow_integration_tests::client::{SERVICE_ACTOR, instance_of, metric_value, parent};
use coachflow_integration_tests::drive::{assignee_actor, default_outputs};
use coachflow_integration_tests::{TestIssuer, TestServer, actor_claims, engagement_name, history};
use coachflow_model::Model;
use coachflow_server::proto::{self, engagement_service_client::EngagementServiceClient};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::stats::Latencies;

/// How long the timer runner may take to fire the timers of one clock move before the
/// clients look for themselves.
const TIMER_WAIT: Duration = Duration::from_secs(120);
/// After a clock move, no timer fired for this long: the rest are later.
const QUIET: Duration = Duration::from_millis(500);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub engagements: usize,
    pub concurrency: usize,
    /// Stakeholders bound to each engagement (for `for_each` tasks).
    pub stakeholders: usize,
    /// Engagement ids are `{prefix}{index:07}`.
    pub id_prefix: String,
    /// Only start the engagements (scenarios b and c store engagements that stay active).
    pub start_only: bool,
    /// Keep every command's acknowledgement time per appended event, for the lag.
    pub keep_acks: bool,
}

/// Acknowledgement times by (engagement index, sequence).
pub type Acks = HashMap<u64, Instant>;

/// The key of an event in [`Acks`].
pub fn ack_key(index: usize, sequence: u64) -> u64 {
    ((index as u64) << 32) | (sequence & 0xffff_ffff)
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub wall: Duration,
    /// Every command (a change), by RPC.
    pub commands: BTreeMap<&'static str, Latencies>,
    /// GetEngagement calls made after a clock move.
    pub reads: Latencies,
    pub errors: BTreeMap<String, u64>,
    /// Engagements that reached COMPLETED (with `start_only`: were started).
    pub finished: usize,
    pub failed: usize,
    pub clock_moves: usize,
    /// Reads that found a due timer not fired yet.
    pub timer_polls: u64,
    pub acks: Acks,
}

impl LoadReport {
    pub fn all_commands(&self) -> Latencies {
        let mut all = Latencies::new();
        for latencies in self.commands.values() {
            all.add(latencies);
        }
        all
    }

    pub fn command_count(&self) -> u64 {
        self.commands.values().map(Latencies::count).sum()
    }

    pub fn completions(&self) -> u64 {
        self.commands.get("CompleteTask").map_or(0, Latencies::count)
    }
}

/// Shared between the clients.
#[derive(Debug, Default)]
struct Schedule {
    next_new: usize,
    ready: VecDeque<usize>,
    /// (waits until, if known; engagement index)
    parked: Vec<(Option<DateTime<Utc>>, usize)>,
    /// Engagements a client is driving.
    active: usize,
    finished: usize,
    failed: usize,
    /// A client is moving the clock.
    moving: bool,
    clock_moves: usize,
}

struct Shared {
    server_grpc: String,
    tokens: Tokens,
    settings: LoadSettings,
    model: Model,
    model_name: String,
    roles: Vec<proto::ModelRole>,
    schedule: Mutex<Schedule>,
    wake: tokio::sync::Notify,
}

/// Runs the load against `server` with `model` (published as `model_name`); returns the
/// figures. Panics only on a broken harness; a failing command is counted, and its
/// engagement given up.
pub async fn run(
    server: &TestServer,
    model: Model,
    published: &proto::Model,
    settings: LoadSettings,
) -> anyhow::Result<LoadReport> {
    let shared = Arc::new(Shared {
        server_grpc: format!("http://{}", server.grpc_address()),
        tokens: Tokens::for_server(server),
        settings: settings.clone(),
        model,
        model_name: published.name.clone(),
        roles: published.roles.clone(),
        schedule: Mutex::new(Schedule::default()),
        wake: tokio::sync::Notify::new(),
    });
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..settings.concurrency.max(1) {
        let channel = Endpoint::from_shared(shared.server_grpc.clone())?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("cannot connect to the server")?;
        let client = Client {
            shared: Arc::clone(&shared),
            grpc: EngagementServiceClient::new(channel),
            commands: BTreeMap::new(),
            reads: Latencies::new(),
            acks: HashMap::new(),
            errors: BTreeMap::new(),
            timer_polls: 0,
        };
        clients.push(tokio::spawn(client.work(server_clock(server))));
    }
    let mut merged = LoadReport::default();
    for client in clients {
        let client = client.await.context("a client panicked")??;
        for (rpc, latencies) in client.commands {
            merged.commands.entry(rpc).or_default().add(&latencies);
        }
        merged.reads.add(&client.reads);
        for (error, count) in client.errors {
            *merged.errors.entry(error).or_default() += count;
        }
        merged.timer_polls += client.timer_polls;
        merged.acks.extend(client.acks);
    }
    merged.wall = started.elapsed();
    let schedule = shared.schedule.lock().unwrap_or_else(PoisonError::into_inner);
    merged.finished = schedule.finished;
    merged.failed = schedule.failed;
    merged.clock_moves = schedule.clock_moves;
    Ok(merged)
}

/// The clock the clients move, and the metrics they read to know the timers fired.
#[derive(Clone)]
struct ServerClock {
    clock: Arc<coachflow_integration_tests::TestClock>,
    metrics: Option<std::net::SocketAddr>,
}

fn server_clock(server: &TestServer) -> ServerClock {
    ServerClock {
        clock: Arc::clone(server.clock()),
        metrics: server.metrics_address(),
    }
}

/// What to do next with an engagement, from its latest state.
#[derive(Debug)]
enum Step {
    Complete(Box<proto::Task>),
    SignOff {
        role: String,
        person: String,
    },
    RecordGoal,
    FollowUp(String),
    Advance(String),
    /// Nothing to do until the clock reaches this time.
    Park(DateTime<Utc>),
    /// Nothing to do until a timer fires.
    WaitForTimer,
    Done,
}

fn next_step(engagement: &proto::Engagement) -> anyhow::Result<Step> {
    if engagement.state() == proto::engagement::State::Completed {
        return Ok(Step::Done);
    }
    if engagement.state() != proto::engagement::State::Active {
        bail!("{} is {:?}", engagement.name, engagement.state());
    }
    let open = engagement
        .tasks
        .iter()
        .filter(|task| task.state() == proto::task::State::Open)
        .min_by(|left, right| instance_of(&left.name).cmp(instance_of(&right.name)));
    if let Some(task) = open {
        return Ok(Step::Complete(Box::new(task.clone())));
    }
    let phase = engagement
        .phase
        .as_ref()
        .ok_or_else(|| anyhow!("{} is active without a phase", engagement.name))?;
    let gate = phase.gate.clone().unwrap_or_default();
    if let Some(role) = gate.missing_sign_offs.first().filter(|_| gate.ready) {
        let person = engagement
            .people
            .iter()
            .find(|binding| binding.role == *role)
            .and_then(|binding| binding.people.first())
            .ok_or_else(|| anyhow!("nobody holds role {role} in {}", engagement.name))?;
        return Ok(Step::SignOff {
            role: role.clone(),
            person: person.clone(),
        });
    }
    if !gate.satisfied && gate.unfinished_tasks.is_empty() && engagement.goals.is_empty() {
        return Ok(Step::RecordGoal);
    }
    if let Some(commitment) = engagement
        .commitments
        .iter()
        .find(|commitment| commitment.status() == proto::commitment::Status::Open)
    {
        return Ok(Step::FollowUp(commitment.id.clone()));
    }
    if gate.satisfied {
        return Ok(Step::Advance(phase.key.clone()));
    }
    let next_opening = engagement
        .tasks
        .iter()
        .filter(|task| task.state() == proto::task::State::Scheduled)
        .filter_map(|task| task.open_time.as_ref())
        .filter_map(|at| DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0)))
        .min();
    // A scheduled task names its time; a repeating task's next occurrence does not show
    // until its timer fires: its history's pending timers tell.
    Ok(next_opening.map_or(Step::WaitForTimer, Step::Park))
}

struct Client {
    shared: Arc<Shared>,
    grpc: EngagementServiceClient<Channel>,
    commands: BTreeMap<&'static str, Latencies>,
    reads: Latencies,
    acks: Acks,
    errors: BTreeMap<String, u64>,
    timer_polls: u64,
}

/// What a client takes next.
enum Work {
    Start(usize),
    Resume(usize),
    Wait,
    MoveClock,
    Stop,
}

impl Client {
    async fn work(mut self, clock: ServerClock) -> anyhow::Result<Client> {
        loop {
            match self.take() {
                Work::Stop => return Ok(self),
                Work::Wait => {
                    let _ = tokio::time::timeout(Duration::from_millis(5), self.shared.wake.notified()).await;
                }
                Work::MoveClock => self.move_clock(&clock).await?,
                Work::Start(index) => {
                    let outcome = self.start(index).await;
                    self.drive(index, outcome).await;
                }
                Work::Resume(index) => {
                    let outcome = self.resume(index, &clock).await;
                    self.drive(index, outcome).await;
                }
            }
        }
    }

    fn take(&self) -> Work {
        let mut schedule = self.shared.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = schedule.ready.pop_front() {
            schedule.active += 1;
            return Work::Resume(index);
        }
        if schedule.next_new < self.shared.settings.engagements {
            let index = schedule.next_new;
            schedule.next_new += 1;
            schedule.active += 1;
            return Work::Start(index);
        }
        if schedule.finished + schedule.failed == self.shared.settings.engagements {
            return Work::Stop;
        }
        if schedule.active == 0 && !schedule.moving && !schedule.parked.is_empty() {
            schedule.moving = true;
            return Work::MoveClock;
        }
        Work::Wait
    }

    fn finish(&self, index: usize, outcome: Finish) {
        let mut schedule = self.shared.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        schedule.active -= 1;
        match outcome {
            Finish::Done => schedule.finished += 1,
            Finish::Failed => schedule.failed += 1,
            Finish::Parked(at) => schedule.parked.push((at, index)),
        }
        drop(schedule);
        self.shared.wake.notify_waiters();
    }

    /// Moves the clock to the earliest time a parked engagement waits for (of those whose
    /// time is unknown, the first one's, from its history: engagements started together
    /// keep step) and waits until the server has fired as many timers as engagements are
    /// released, or until no more fire.
    async fn move_clock(&mut self, clock: &ServerClock) -> anyhow::Result<()> {
        let (parked, unknown) = {
            let schedule = self.shared.schedule.lock().unwrap_or_else(PoisonError::into_inner);
            let known = schedule.parked.iter().filter_map(|(at, _)| *at).min();
            let unknown = schedule
                .parked
                .iter()
                .find(|(at, _)| at.is_none())
                .map(|(_, index)| *index);
            (known, unknown)
        };
        let unknown_at = match unknown {
            Some(index) => {
                let name = engagement_name(&format!("{}{index:07}", self.shared.settings.id_prefix));
                Some(self.next_timer(&name).await?)
            }
            None => None,
        };
        let now = clock.clock.now();
        let at = parked.into_iter().chain(unknown_at).min().unwrap_or(now).max(now);
        let due = {
            let mut schedule = self.shared.schedule.lock().unwrap_or_else(PoisonError::into_inner);
            let (due, waiting): (Vec<_>, Vec<_>) = schedule
                .parked
                .drain(..)
                .partition(|(until, _)| until.is_none_or(|until| until <= at));
            schedule.parked = waiting;
            schedule.clock_moves += 1;
            due
        };
        let fired_before = fired_timers(clock).await;
        clock.clock.set(at);
        if let Some(before) = fired_before {
            let target = before + due.len() as f64;
            let deadline = Instant::now() + TIMER_WAIT;
            let mut last = (before, Instant::now());
            while Instant::now() < deadline {
                let Some(fired) = fired_timers(clock).await else { break };
                if fired >= target {
                    break;
                }
                if fired > last.0 {
                    last = (fired, Instant::now());
                } else if last.1.elapsed() > QUIET {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let mut schedule = self.shared.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        schedule.ready.extend(due.into_iter().map(|(_, index)| index));
        schedule.moving = false;
        drop(schedule);
        self.shared.wake.notify_waiters();
        Ok(())
    }

    async fn start(&mut self, index: usize) -> anyhow::Result<proto::Engagement> {
        let settings = &self.shared.settings;
        let id = format!("{}{index:07}", settings.id_prefix);
        let mut people = Vec::new();
        for role in &self.shared.roles {
            let persons: Vec<String> = if role.multiple {
                (1..=settings.stakeholders)
                    .map(|n| format!("{}-{}-{n}", role.key, index))
                    .collect()
            } else {
                // A thousand coaches (and sponsors...) each with a share of the engagements:
                // their queues are realistic pages for ListTasks.
                vec![format!("{}-{}", role.key, index % 1000)]
            };
            if !persons.is_empty() {
                people.push(proto::RoleBinding {
                    role: role.key.clone(),
                    people: persons,
                });
            }
        }
        let request = proto::CreateEngagementRequest {
            parent: parent(),
            engagement_id: id,
            model: self.shared.model_name.clone(),
            model_version: 0,
            timezone: "Europe/Berlin".to_owned(),
            people,
            request_id: String::new(),
        };
        let sent = Instant::now();
        let reply = self
            .grpc
            .create_engagement(self.shared.tokens.request(request, SERVICE_ACTOR))
            .await;
        self.record("CreateEngagement", index, 0, sent, reply)
    }

    async fn resume(&mut self, index: usize, clock: &ServerClock) -> anyhow::Result<proto::Engagement> {
        let name = engagement_name(&format!("{}{index:07}", self.shared.settings.id_prefix));
        loop {
            let sent = Instant::now();
            let engagement = self
                .grpc
                .get_engagement(
                    self.shared
                        .tokens
                        .request(proto::GetEngagementRequest { name: name.clone() }, SERVICE_ACTOR),
                )
                .await
                .map_err(|status| anyhow!("GetEngagement {name}: {status}"))?
                .into_inner();
            self.reads.record(sent.elapsed());
            let waits_until = match next_step(&engagement)? {
                Step::Park(at) => at,
                Step::WaitForTimer => self.next_timer(&name).await?,
                _ => return Ok(engagement),
            };
            if waits_until > clock.clock.now() {
                return Ok(engagement);
            }
            // Due, but the timer runner has not fired it yet.
            self.timer_polls += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn drive(&mut self, index: usize, first: anyhow::Result<proto::Engagement>) {
        let outcome = self.drive_from(index, first).await;
        let outcome = outcome.unwrap_or_else(|error| {
            *self.errors.entry(format!("{error:#}")).or_default() += 1;
            Finish::Failed
        });
        self.finish(index, outcome);
    }

    async fn drive_from(&mut self, index: usize, first: anyhow::Result<proto::Engagement>) -> anyhow::Result<Finish> {
        let mut engagement = first?;
        if self.shared.settings.start_only {
            return Ok(Finish::Done);
        }
        loop {
            let step = next_step(&engagement)?;
            let name = engagement.name.clone();
            let before = engagement.event_count;
            let sent = Instant::now();
            engagement = match step {
                Step::Done => return Ok(Finish::Done),
                Step::Park(at) => return Ok(Finish::Parked(Some(at))),
                // Its time is found when the clock moves (reading the history of every
                // parked engagement would cost the server more than the run's commands).
                Step::WaitForTimer => return Ok(Finish::Parked(None)),
                Step::Complete(task) => {
                    let request = proto::CompleteTaskRequest {
                        name: task.name.clone(),
                        outputs: Some(default_outputs(&self.shared.model, &task.key)),
                        etag: String::new(),
                        request_id: String::new(),
                    };
                    let reply = self
                        .grpc
                        .complete_task(self.shared.tokens.request(request, &assignee_actor(&task)))
                        .await;
                    self.record("CompleteTask", index, before, sent, reply)?
                }
                Step::SignOff { role, person } => {
                    let request = proto::SignOffPhaseRequest {
                        engagement: name,
                        role,
                        person: person.clone(),
                        etag: String::new(),
                        request_id: String::new(),
                    };
                    let reply = self
                        .grpc
                        .sign_off_phase(self.shared.tokens.request(request, &format!("person/{person}")))
                        .await;
                    self.record("SignOffPhase", index, before, sent, reply)?
                }
                Step::RecordGoal => {
                    let request = proto::RecordGoalRequest {
                        engagement: name,
                        goal_id: "goal-1".to_owned(),
                        title: "Delegate the weekly operations review".to_owned(),
                        measure: "reviews chaired by a direct report".to_owned(),
                        target: "4 of 4 in a month".to_owned(),
                        due_date: String::new(),
                        etag: String::new(),
                        request_id: String::new(),
                    };
                    let reply = self
                        .grpc
                        .record_goal(self.shared.tokens.request(request, SERVICE_ACTOR))
                        .await;
                    self.record("RecordGoal", index, before, sent, reply)?
                }
                Step::FollowUp(commitment_id) => {
                    let request = proto::RecordCommitmentFollowUpRequest {
                        engagement: name,
                        commitment_id,
                        status: proto::commitment::Status::Kept.into(),
                        note: String::new(),
                        follow_up_time: None,
                        etag: String::new(),
                        request_id: String::new(),
                    };
                    let reply = self
                        .grpc
                        .record_commitment_follow_up(self.shared.tokens.request(request, SERVICE_ACTOR))
                        .await;
                    self.record("RecordCommitmentFollowUp", index, before, sent, reply)?
                }
                Step::Advance(phase) => {
                    let request = proto::AdvancePhaseRequest {
                        engagement: name,
                        expected_phase: phase,
                        etag: String::new(),
                        request_id: String::new(),
                    };
                    let reply = self
                        .grpc
                        .advance_phase(self.shared.tokens.request(request, SERVICE_ACTOR))
                        .await;
                    self.record("AdvancePhase", index, before, sent, reply)?
                }
            };
        }
    }

    /// The time of the engagement's next pending timer, from its history.
    async fn next_timer(&mut self, name: &str) -> anyhow::Result<DateTime<Utc>> {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .grpc
                .get_history(self.shared.tokens.request(
                    proto::GetHistoryRequest {
                        name: name.to_owned(),
                        page_size: 1000,
                        page_token,
                    },
                    SERVICE_ACTOR,
                ))
                .await
                .map_err(|status| anyhow!("GetHistory {name}: {status}"))?
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        history::timers(&events)
            .pending
            .values()
            .min()
            .copied()
            .ok_or_else(|| anyhow!("{name} has nothing to do and no timer pending"))
    }

    /// Records a command's latency (and, for the lag, its events' acknowledgement time).
    fn record(
        &mut self,
        rpc: &'static str,
        index: usize,
        events_before: u64,
        sent: Instant,
        reply: Result<tonic::Response<proto::Engagement>, tonic::Status>,
    ) -> anyhow::Result<proto::Engagement> {
        let acknowledged = Instant::now();
        match reply {
            Ok(reply) => {
                self.commands.entry(rpc).or_default().record(acknowledged - sent);
                let engagement = reply.into_inner();
                if self.shared.settings.keep_acks {
                    for sequence in events_before + 1..=engagement.event_count {
                        self.acks.insert(ack_key(index, sequence), acknowledged);
                    }
                }
                Ok(engagement)
            }
            Err(status) => Err(anyhow!("{rpc}: {:?} {}", status.code(), status.message())),
        }
    }
}

enum Finish {
    Done,
    Failed,
    /// Waits for a timer, at this time if known.
    Parked(Option<DateTime<Utc>>),
}

/// The bearer tokens of the actors a load acts as, minted once each from the server's
/// issuer (none for a server in local mode, where every call is the local administrator).
#[derive(Debug)]
pub struct Tokens {
    issuer: Option<Arc<TestIssuer>>,
    now: DateTime<Utc>,
    minted: Mutex<HashMap<String, Option<MetadataValue<Ascii>>>>,
}

impl Tokens {
    pub fn for_server(server: &TestServer) -> Tokens {
        Tokens {
            issuer: server.issuer().cloned(),
            now: server.now(),
            minted: Mutex::new(HashMap::new()),
        }
    }

    /// `message` as `actor` (`person/{id}` or `service/{name}`) sends it.
    pub fn request<T>(&self, message: T, actor: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = {
            let mut minted = self.minted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            minted
                .entry(actor.to_owned())
                .or_insert_with(|| {
                    let issuer = self.issuer.as_ref()?;
                    let token = issuer.token(&actor_claims(actor), self.now);
                    format!("Bearer {token}").parse().ok()
                })
                .clone()
        };
        if let Some(value) = value {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

/// `coachflow_timers_fired_total{outcome="fired"}`, or `None` without a metrics endpoint.
async fn fired_timers(clock: &ServerClock) -> Option<f64> {
    fired_timers_at(clock.metrics?).await
}

/// `coachflow_timers_fired_total{outcome="fired"}` of the server whose metrics endpoint is
/// `address`; `None` if it cannot be read.
pub async fn fired_timers_at(address: std::net::SocketAddr) -> Option<f64> {
    let exposition = scrape(address).await.ok()?;
    Some(metric_value(&exposition, "coachflow_timers_fired_total", &[("outcome", "fired")]).unwrap_or(0.0))
}

/// The group commit's figures so far, from the server's metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitFigures {
    /// Commands committed per write transaction: above 1 where commits are grouped.
    pub per_transaction: f64,
    /// A batch's mean time from its `BEGIN` to its commit, in ms.
    pub batch_ms: f64,
    /// A commit's mean wait for its batch's transaction to begin, in ms.
    pub wait_ms: f64,
}

/// [`CommitFigures`] of the server whose metrics endpoint is `address`; `None` before
/// any transaction committed.
pub async fn commit_figures_at(address: std::net::SocketAddr) -> Option<CommitFigures> {
    let exposition = scrape(address).await.ok()?;
    let sum = |metric: &str| {
        exposition
            .lines()
            .filter(|line| line.split([' ', '{']).next() == Some(metric))
            .filter_map(|line| line.rsplit_once(' ').and_then(|(_, value)| value.parse::<f64>().ok()))
            .sum::<f64>()
    };
    let mean_ms = |histogram: &str| 1000.0 * sum(&format!("{histogram}_sum")) / sum(&format!("{histogram}_count"));
    let transactions = sum("coachflow_commit_transactions_total");
    (transactions > 0.0).then(|| CommitFigures {
        per_transaction: sum("coachflow_commands_committed_total") / transactions,
        batch_ms: mean_ms("coachflow_commit_batch_duration_seconds"),
        wait_ms: mean_ms("coachflow_commit_wait_seconds"),
    })
}

/// `GET /metrics` from the server.
pub async fn scrape(address: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    Ok(body.to_owned())
}
