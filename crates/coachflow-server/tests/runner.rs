//! The timer runner and the command path in-process, on real databases, with a clock the
//! test moves: timers fire exactly once with two runners on one database, and timers missed
//! while no runner was up fire when one starts; replicas keeping engagement states in memory
//! lose no change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use coachflow_engine::Action;
use coachflow_model::Model;
use coachflow_server::application::authorization::{PrincipalKind, Tenancy};
use coachflow_server::application::{
    Core, CoreSettings, CreateEngagement, EngagementName, Method, ModelSource, Mutation, Principal,
};
use coachflow_server::clock::{ManualClock, SharedClock};
use coachflow_server::timers::{self, RunnerSettings};
use coachflow_store::{Store, StoreOptions};
use tokio::sync::watch;

const MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata: {key: timers, name: Timer-heavy test model}
spec:
  roles:
    - {key: client, required: true}
    - {key: coach, required: true}
  phases:
    - key: only
      name: Only phase
      tasks:
        - key: prepare
          name: Prepare
          kind: action
          assignee: coach
          due: PT1H
          reminders: [PT30M, PT45M]
          escalate_after: PT2H
        - key: follow-up
          name: Follow-up
          kind: checkin
          assignee: coach
          start_after: PT90M
";

fn start_time() -> DateTime<Utc> {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

fn core(store: Store, clock: &Arc<ManualClock>) -> Arc<Core> {
    let clock: SharedClock = clock.clone();
    Arc::new(Core::new(
        store,
        clock,
        CoreSettings {
            max_retries: 8,
            // Two runners on one database each keep states: a stale one must be noticed.
            cached_engagements: 4096,
            idempotency_ttl: Duration::from_secs(3600),
            audience: coachflow_engine::Audience::default(),
        },
    ))
}

const CREATE_MODEL: &str = "coachflow.v1.ModelService/CreateModel";
const CREATE: &str = "coachflow.v1.EngagementService/CreateEngagement";
const GET: &str = "coachflow.v1.EngagementService/GetEngagement";

fn method(name: &'static str) -> Method {
    Method::named(name)
}

/// The service itself: every power.
fn service() -> Principal {
    Principal::service()
}

/// A person of tenant acme, with no system powers.
fn person(subject: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        tenancy: Tenancy::One("acme".to_owned()),
        scopes: Default::default(),
        delegate: None,
        kind: PrincipalKind::Token,
    }
}

async fn publish(core: &Core) {
    let model = Model::from_text(MODEL).unwrap();
    let source = ModelSource {
        text: MODEL,
        format: "yaml",
        compiled: &model,
    };
    core.publish_model(&service(), method(CREATE_MODEL), "acme", source, "")
        .await
        .unwrap();
}

fn create_request(id: &str, client: &str) -> CreateEngagement {
    CreateEngagement {
        id: Some(id.to_owned()),
        model: "timers".to_owned(),
        version: None,
        timezone: None,
        people: BTreeMap::from([
            ("client".to_owned(), vec![client.to_owned()]),
            ("coach".to_owned(), vec!["coach-1".to_owned()]),
        ]),
    }
}

async fn start(core: &Core, id: &str) {
    core.create(
        &service(),
        method(CREATE),
        "acme",
        create_request(id, &format!("{id}-client")),
        "",
    )
    .await
    .unwrap();
}

fn runner(core: &Arc<Core>, owner: &str, shutdown: &watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(timers::run(
        Arc::clone(core),
        RunnerSettings {
            owner: owner.to_owned(),
            batch_size: 7,
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(20),
        },
        shutdown.clone(),
    ))
}

/// The ids of the timers fired in each engagement's history, with how often each fired.
async fn fired(store: &Store, ids: &[String]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut fired = BTreeMap::new();
    for id in ids {
        let mut counts = BTreeMap::new();
        for event in store.history("acme", id, 0, 10_000).await.unwrap() {
            if let coachflow_engine::EventKind::TimerFired { id } = &event.kind {
                *counts.entry(id.clone()).or_insert(0) += 1;
            }
        }
        fired.insert(id.clone(), counts);
    }
    fired
}

async fn wait_until_no_timers(store: &Store) {
    for _ in 0..500 {
        if store.count_timers().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timers still pending: {}", store.count_timers().await.unwrap());
}

fn expected_timers() -> BTreeMap<String, usize> {
    [
        "open:follow-up",
        "remind0:prepare",
        "remind1:prepare",
        "due:prepare",
        "escalate:prepare",
    ]
    .into_iter()
    .map(|id| (id.to_owned(), 1))
    .collect()
}

async fn two_runners_fire_every_timer_once(first: Store, second: Store) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let (one, two) = (core(first.clone(), &clock), core(second, &clock));
    publish(&one).await;
    let ids: Vec<String> = (0..24).map(|index| format!("e-{index}")).collect();
    for id in &ids {
        start(&one, id).await;
    }
    assert_eq!(first.count_timers().await.unwrap(), 24 * 5);
    let (stop, shutdown) = watch::channel(false);
    let runners = [runner(&one, "a", &shutdown), runner(&two, "b", &shutdown)];
    // Nothing is due yet: the runners must not fire anything early.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(first.count_timers().await.unwrap(), 24 * 5);

    clock.advance(TimeDelta::hours(3));
    wait_until_no_timers(&first).await;
    stop.send(true).unwrap();
    for runner in runners {
        runner.await.unwrap();
    }
    for (id, counts) in fired(&first, &ids).await {
        assert_eq!(counts, expected_timers(), "timers fired in {id}");
    }
    let engagement = one
        .engagement(&service(), method(GET), &EngagementName::new("acme", "e-0"))
        .await
        .unwrap();
    let tasks = &engagement.state.tasks;
    let prepare = tasks.values().find(|task| task.task == "prepare").unwrap();
    assert!(prepare.overdue && prepare.escalated, "{prepare:?}");
    assert!(
        tasks
            .values()
            .any(|task| task.task == "follow-up" && task.status == coachflow_engine::TaskStatus::Open)
    );
}

async fn missed_timers_fire_when_a_runner_starts(store: Store) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let core = core(store.clone(), &clock);
    publish(&core).await;
    start(&core, "late").await;
    // The service was down for a week: every timer is long overdue when the runner starts.
    clock.advance(TimeDelta::days(7));
    let (stop, shutdown) = watch::channel(false);
    let handle = runner(&core, "only", &shutdown);
    wait_until_no_timers(&store).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(fired(&store, &["late".to_owned()]).await["late"], expected_timers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_runners_fire_every_timer_once() {
    let (first, guard) = coachflow_store::testing::fresh_postgres().await;
    let second = Store::connect(guard.url(), StoreOptions::default()).await.unwrap();
    two_runners_fire_every_timer_once(first, second).await;
    guard.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_runners_fire_every_timer_once() {
    let (first, guard) = coachflow_store::testing::fresh_sqlite().await;
    let second = Store::connect(guard.url(), StoreOptions::default()).await.unwrap();
    two_runners_fire_every_timer_once(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_missed_timers_fire_when_a_runner_starts() {
    let (store, guard) = coachflow_store::testing::fresh_postgres().await;
    missed_timers_fire_when_a_runner_starts(store).await;
    guard.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_missed_timers_fire_when_a_runner_starts() {
    let (store, _guard) = coachflow_store::testing::fresh_sqlite().await;
    missed_timers_fire_when_a_runner_starts(store).await;
}

/// Concurrent twins of one CreateEngagement (same request id, same engagement id) all get
/// the first one's response, never ALREADY_EXISTS: the engagement exists once.
async fn concurrent_twins_of_a_create_get_one_answer(store: Store) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let core = core(store.clone(), &clock);
    publish(&core).await;
    let twins = (0..8).map(|_| {
        let core = Arc::clone(&core);
        tokio::spawn(async move {
            core.create(
                &service(),
                method(CREATE),
                "acme",
                create_request("twin", "p-1"),
                "create-twin-1",
            )
            .await
        })
    });
    let mut answers = Vec::new();
    for twin in twins.collect::<Vec<_>>() {
        answers.push(twin.await.unwrap().unwrap());
    }
    assert!(answers.windows(2).all(|pair| pair[0].state == pair[1].state));
    let history = store.history("acme", "twin", 0, 1000).await.unwrap();
    assert_eq!(history.len() as u64, answers[0].state.sequence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_twins_of_a_create_get_one_answer() {
    let (store, guard) = coachflow_store::testing::fresh_postgres().await;
    concurrent_twins_of_a_create_get_one_answer(store).await;
    guard.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_twins_of_a_create_get_one_answer() {
    let (store, _guard) = coachflow_store::testing::fresh_sqlite().await;
    concurrent_twins_of_a_create_get_one_answer(store).await;
}

/// Two replicas (each keeping the states it committed) take turns changing one
/// engagement: a state the other replica has moved past is noticed, no change is lost,
/// reads answer with the stored state, and an etag is checked against it.
async fn replicas_keeping_states_lose_no_change(first: Store, second: Store) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let (one, two) = (core(first.clone(), &clock), core(second, &clock));
    publish(&one).await;
    start(&one, "shared").await;
    let name = EngagementName::new("acme", "shared");
    let goal = |n: u32| Mutation {
        engagement: name.clone(),
        method: method("coachflow.v1.EngagementService/RecordGoal"),
        action: Action::RecordGoal {
            goal: format!("goal-{n}"),
            title: format!("Goal {n}"),
            measure: None,
            target: None,
            due: None,
        },
        expected_sequence: None,
        request_id: String::new(),
    };
    for n in 0..6 {
        // Alternate: each replica's kept state is one change behind when its turn comes.
        let replica = if n % 2 == 0 { &one } else { &two };
        let executed = replica.execute(&service(), goal(n)).await.unwrap();
        assert_eq!(executed.engagement.state.goals.len(), n as usize + 1, "change {n}");
        // The other replica reads what was just committed, not what it kept.
        let other = if n % 2 == 0 { &two } else { &one };
        let read = other.engagement(&service(), method(GET), &name).await.unwrap();
        assert_eq!(read.state, executed.engagement.state);
    }
    let history = first.history("acme", "shared", 0, 1000).await.unwrap();
    let goals = history
        .iter()
        .filter(|event| matches!(event.kind, coachflow_engine::EventKind::GoalSet { .. }))
        .count();
    assert_eq!(goals, 6);

    // An etag from the other replica's latest reply is accepted by a replica whose kept
    // state is older; a stale etag is refused.
    let latest = two
        .engagement(&service(), method(GET), &name)
        .await
        .unwrap()
        .state
        .sequence;
    let pinned = Mutation {
        expected_sequence: Some(latest),
        ..goal(6)
    };
    let executed = two.execute(&service(), pinned).await.unwrap();
    let stale = Mutation {
        expected_sequence: Some(latest),
        ..goal(7)
    };
    let error = one.execute(&service(), stale).await.unwrap_err();
    assert!(error.to_string().contains("etag"), "{error}");
    let read = one.engagement(&service(), method(GET), &name).await.unwrap();
    assert_eq!(read.state, executed.engagement.state);

    // The other replica fires the timer that opens the follow-up: a replica whose kept
    // state has it still scheduled neither refuses to complete it nor treats the timer as
    // gone.
    clock.advance(TimeDelta::minutes(90));
    let fire = |timer: &str| Mutation {
        engagement: name.clone(),
        method: method("coachflow.internal/FireTimer"),
        action: Action::FireTimer {
            timer: timer.to_owned(),
        },
        expected_sequence: None,
        request_id: String::new(),
    };
    let opened = two.execute(&service(), fire("open:follow-up")).await.unwrap();
    assert!(opened.events > 0);
    let follow_up = opened
        .engagement
        .state
        .tasks
        .values()
        .find(|task| task.task == "follow-up")
        .unwrap();
    let complete = Mutation {
        engagement: name.clone(),
        method: method("coachflow.v1.EngagementService/CompleteTask"),
        action: Action::CompleteTask {
            task: follow_up.id.clone(),
            outputs: BTreeMap::new(),
        },
        expected_sequence: None,
        request_id: String::new(),
    };
    // The coach, the task's assignee, on the replica whose kept state is behind.
    let completed = one.execute(&person("coach-1"), complete).await.unwrap();
    assert!(completed.events > 0);
    // Firing it again is nothing to do, on either replica.
    assert_eq!(one.execute(&service(), fire("open:follow-up")).await.unwrap().events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_keeping_states_lose_no_change() {
    let (first, guard) = coachflow_store::testing::fresh_postgres().await;
    let second = Store::connect(guard.url(), StoreOptions::default()).await.unwrap();
    replicas_keeping_states_lose_no_change(first, second).await;
    guard.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replicas_keeping_states_lose_no_change() {
    let (first, guard) = coachflow_store::testing::fresh_sqlite().await;
    let second = Store::connect(guard.url(), StoreOptions::default()).await.unwrap();
    replicas_keeping_states_lose_no_change(first, second).await;
}
