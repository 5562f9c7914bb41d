//! Drives engagements with the real engine and commits its decisions, as the server does.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use coachflow_engine::{Action, Actor, Command, Decision, EngagementState, Event, decide};
use coachflow_model::Model;
use coachflow_store::{Commit, NewIdempotencyKey, NewOutboxEvent, Store, StoreError, StoreOptions};
use serde_json::json;

/// A migrated database of one test, and what keeps it alive.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    pub _guard: Box<dyn Any + Send>,
}

impl TestDb {
    /// Another store (its own pool) on the same database.
    pub async fn connect(&self, options: StoreOptions) -> Store {
        Store::connect(&self.url, options).await.unwrap()
    }
}

pub fn four_stage() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::from_text(include_str!("../../../../models/four-stage.yaml")).unwrap())
}

pub fn seven_step() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::from_text(include_str!("../../../../models/seven-step.yaml")).unwrap())
}

pub fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

pub fn t0() -> DateTime<Utc> {
    utc("2026-03-02T09:00:00Z")
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// A client, a coach, a sponsor, HR and two stakeholders.
pub fn people(client: &str, coach: &str) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        ("client".to_owned(), vec![client.to_owned()]),
        ("coach".to_owned(), vec![coach.to_owned()]),
        ("sponsor".to_owned(), vec!["sponsor-1".to_owned()]),
        ("hr".to_owned(), vec!["hr-1".to_owned()]),
        (
            "stakeholder".to_owned(),
            vec!["stakeholder-1".to_owned(), "stakeholder-2".to_owned()],
        ),
    ])
}

pub fn record_goal(goal: &str) -> Action {
    Action::RecordGoal {
        goal: goal.to_owned(),
        title: "Delegate the weekly operations review".to_owned(),
        measure: None,
        target: None,
        due: None,
    }
}

/// Starts `count` engagements `eng-0`, `eng-1`, ... of `model`; returns their ids and
/// states.
pub async fn start_many(store: &Store, model: &Model, count: usize) -> (Vec<String>, Vec<EngagementState>) {
    let ids: Vec<String> = (0..count).map(|n| format!("eng-{n}")).collect();
    let mut states = Vec::new();
    for id in &ids {
        states.push(
            start(store, model, "acme", id, people("client-1", "coach-1"), t0())
                .await
                .state,
        );
    }
    (ids, states)
}

/// Sets up two refusals for a later batch: eng-0 moves on (a decision on `states[0]` is
/// stale), and the request id "taken" is stored with a commit of eng-1.
pub async fn stale_and_taken(store: &Store, model: &Model, states: &[EngagementState]) {
    act(store, model, "acme", "eng-0", record_goal("moved-on"), t0() + days(1))
        .await
        .unwrap();
    let first = decide_on(model, &states[1], record_goal("first"), t0() + days(1));
    let key = Some(idempotency_key("acme", "taken", t0() + days(1)));
    commit_decision(store, "acme", "eng-1", states[1].sequence, &first, key, t0() + days(1))
        .await
        .unwrap();
}

pub fn start_action(people: BTreeMap<String, Vec<String>>) -> Action {
    Action::Start {
        model_version: 1,
        timezone: Some("UTC".into()),
        people,
    }
}

pub fn decide_on(model: &Model, state: &EngagementState, action: Action, now: DateTime<Utc>) -> Decision {
    let command = Command {
        actor: Actor::Service("lms".into()),
        action,
    };
    decide(model, state, &command, now).unwrap_or_else(|error| panic!("refused: {error:?}"))
}

/// The outbox rows of the public events among `events`.
pub fn outbox_for(tenant: &str, engagement: &str, events: &[Event]) -> Vec<NewOutboxEvent> {
    events
        .iter()
        .filter_map(|event| {
            let (entity, action) = event.kind.public_name()?;
            Some(NewOutboxEvent {
                event_id: format!("{tenant}/{engagement}/{}", event.sequence),
                sequence: event.sequence,
                event_type: format!("dev.coachflow.{entity}.{action}.v1"),
                routing_key: format!("{tenant}.{entity}.{action}"),
                subject: format!("tenants/{tenant}/engagements/{engagement}"),
                time: event.at,
                data: json!({ "sequence": event.sequence }).to_string(),
                traceparent: None,
            })
        })
        .collect()
}

pub fn idempotency_key(tenant: &str, request_id: &str, now: DateTime<Utc>) -> NewIdempotencyKey {
    NewIdempotencyKey {
        tenant: tenant.to_owned(),
        request_id: request_id.to_owned(),
        method: "coachflow.v1.Engagements/CompleteTask".to_owned(),
        request_hash: format!("hash-of-{request_id}"),
        response: vec![0x0a, 0x03, b'a', b'b', b'c', 0x00, 0xff],
        created_at: now,
        expires_at: now + days(1),
    }
}

/// Commits `decision`, made on the state at `expected_sequence`, with its outbox rows.
pub async fn commit_decision(
    store: &Store,
    tenant: &str,
    engagement: &str,
    expected_sequence: u64,
    decision: &Decision,
    idempotency: Option<NewIdempotencyKey>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let outbox = outbox_for(tenant, engagement, &decision.events);
    store
        .commit(Commit {
            tenant,
            engagement,
            expected_sequence,
            events: &decision.events,
            effects: &decision.effects,
            state: &decision.state,
            outbox: &outbox,
            idempotency,
            now,
        })
        .await
}

/// Starts an engagement of `model` and commits it; returns the decision.
pub async fn start(
    store: &Store,
    model: &Model,
    tenant: &str,
    engagement: &str,
    people: BTreeMap<String, Vec<String>>,
    now: DateTime<Utc>,
) -> Decision {
    let decision = decide_on(model, &EngagementState::default(), start_action(people), now);
    commit_decision(store, tenant, engagement, 0, &decision, None, now)
        .await
        .unwrap();
    decision
}

/// Loads the engagement, decides `action` and commits: what a request does.
pub async fn act(
    store: &Store,
    model: &Model,
    tenant: &str,
    engagement: &str,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let loaded = store.load_engagement(tenant, engagement).await?.unwrap();
    let decision = decide_on(model, &loaded.state, action, now);
    commit_decision(store, tenant, engagement, loaded.state.sequence, &decision, None, now).await?;
    Ok(decision)
}

/// Fires, in order, every timer of the engagement that is due by `until`, each at its own
/// time, as the timer runner would; returns the last decision's state.
pub async fn advance(store: &Store, model: &Model, tenant: &str, engagement: &str, until: DateTime<Utc>) {
    loop {
        let loaded = store.load_engagement(tenant, engagement).await.unwrap().unwrap();
        let next = loaded
            .state
            .timers
            .values()
            .filter(|timer| !timer.deferred && timer.at <= until)
            .min_by_key(|timer| (timer.at, timer.id.clone()))
            .map(|timer| (timer.id.clone(), timer.at));
        let Some((timer, at)) = next else { return };
        act(store, model, tenant, engagement, Action::FireTimer { timer }, at)
            .await
            .unwrap();
    }
}

/// Completes the open task `task` with outputs that satisfy the kick-off meeting.
pub fn complete(task: &str) -> Action {
    Action::CompleteTask {
        task: task.to_owned(),
        outputs: BTreeMap::from([
            ("expected_outcomes".to_owned(), json!("lead the operations review")),
            ("team_committed".to_owned(), json!(true)),
        ]),
    }
}

/// The timers table as the effects of `decisions` leave it: id → fires_at.
pub fn timers_after(decisions: &[&Decision]) -> BTreeMap<String, DateTime<Utc>> {
    let mut timers = BTreeMap::new();
    for decision in decisions {
        for effect in &decision.effects {
            match effect {
                coachflow_engine::Effect::ScheduleTimer { id, at } => {
                    timers.insert(id.clone(), *at);
                }
                coachflow_engine::Effect::CancelTimer { id } => {
                    timers.remove(id);
                }
            }
        }
    }
    timers
}
