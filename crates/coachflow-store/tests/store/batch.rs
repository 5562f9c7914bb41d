//! Group commit: the commits held back together go in one transaction, and each still gets
//! its own outcome.

use std::collections::BTreeSet;
use std::time::Duration;

use coachflow_engine::{Decision, EngagementState};
use coachflow_store::{Backend, Commit, NewIdempotencyKey, Store, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::task::JoinHandle;

use crate::support::{
    TestDb, days, decide_on, four_stage, idempotency_key, outbox_for, people, record_goal, stale_and_taken,
    start_action, start_many, t0,
};

/// Commits held back in one open batch, in the order they were queued.
struct Queue<'a> {
    store: &'a Store,
    commits: Vec<JoinHandle<Result<(), StoreError>>>,
}

impl Queue<'_> {
    /// Queues the commit of `decision` (made on the state at `expected`) and waits until it
    /// waits in the batch.
    async fn push(&mut self, id: &str, expected: u64, decision: Decision, key: Option<NewIdempotencyKey>) {
        self.push_with(id, expected, decision, key, |_| {}).await;
    }

    /// The same, with its outbox rows changed by `edit` first.
    async fn push_with(
        &mut self,
        id: &str,
        expected: u64,
        decision: Decision,
        key: Option<NewIdempotencyKey>,
        edit: impl FnOnce(&mut Vec<coachflow_store::NewOutboxEvent>),
    ) {
        let store = self.store.clone();
        let id = id.to_owned();
        let mut outbox = outbox_for("acme", &id, &decision.events);
        edit(&mut outbox);
        self.commits.push(tokio::spawn(async move {
            store
                .commit(Commit {
                    tenant: "acme",
                    engagement: &id,
                    expected_sequence: expected,
                    events: &decision.events,
                    effects: &decision.effects,
                    state: &decision.state,
                    outbox: &outbox,
                    idempotency: key,
                    now: t0() + days(2),
                })
                .await
        }));
        let queued = self.commits.len();
        while self.store.queued_batch_commits() < queued {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn outcomes(self) -> Vec<Result<(), StoreError>> {
        let mut outcomes = Vec::new();
        for commit in self.commits {
            outcomes.push(commit.await.unwrap());
        }
        outcomes
    }
}

/// The transaction ids that last wrote the projection rows of `ids`.
async fn writers(db: &TestDb, ids: &[&str]) -> BTreeSet<String> {
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
    let rows = db
        .store
        .connection()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT xmin::text AS writer FROM engagements WHERE tenant = 'acme' AND id IN ({list})"),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    rows.iter()
        .map(|row| row.try_get::<String>("", "writer").unwrap())
        .collect()
}

async fn goals(store: &Store, id: &str) -> Vec<String> {
    let loaded = store.load_engagement("acme", id).await.unwrap().unwrap();
    let sequences: Vec<u64> = store
        .history("acme", id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|event| event.sequence)
        .collect();
    assert_eq!(
        sequences,
        (1..=loaded.state.sequence).collect::<Vec<_>>(),
        "{id}: no gaps"
    );
    loaded.state.goals.keys().cloned().collect()
}

pub async fn a_batch_commits_what_it_can(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let (ids, states) = start_many(store, model, 8).await;
    stale_and_taken(store, model, &states).await;
    let key = || Some(idempotency_key("acme", "taken", t0() + days(1)));
    let eng_1_before = store.load_engagement("acme", "eng-1").await.unwrap().unwrap().state;

    let hold = store.hold_batch_commits().await;
    let mut queue = Queue {
        store,
        commits: Vec::new(),
    };
    let together = |state: &EngagementState, goal: &str| decide_on(model, state, record_goal(goal), t0() + days(2));
    let refused_key = |id: &str| Some(idempotency_key("acme", &format!("req-{id}"), t0() + days(2)));
    queue
        .push(
            "eng-0",
            states[0].sequence,
            together(&states[0], "stale"),
            refused_key("eng-0"),
        )
        .await;
    queue
        .push("eng-1", eng_1_before.sequence, together(&eng_1_before, "twice"), key())
        .await;
    // Two commits to eng-2 decided on the same state: the first wins, the second finds
    // the engagement moved on.
    queue
        .push("eng-2", states[2].sequence, together(&states[2], "first-of-two"), None)
        .await;
    queue
        .push("eng-2", states[2].sequence, together(&states[2], "second-of-two"), None)
        .await;
    let starting = decide_on(
        model,
        &EngagementState::default(),
        start_action(people("client-2", "coach-1")),
        t0() + days(2),
    );
    queue.push("eng-3", 0, starting.clone(), refused_key("eng-3")).await;
    queue.push("eng-new", 0, starting, None).await;
    for index in 4..8 {
        queue
            .push(
                &ids[index],
                states[index].sequence,
                together(&states[index], "together"),
                Some(idempotency_key("acme", &format!("req-{index}"), t0() + days(2))),
            )
            .await;
    }
    drop(hold);
    let outcomes = queue.outcomes().await;

    assert!(matches!(outcomes[0], Err(StoreError::Conflict)), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(StoreError::DuplicateRequest)),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert!(matches!(outcomes[3], Err(StoreError::Conflict)), "{:?}", outcomes[3]);
    assert!(
        matches!(outcomes[4], Err(StoreError::AlreadyExists(_))),
        "{:?}",
        outcomes[4]
    );
    for (index, outcome) in outcomes.iter().enumerate().skip(5) {
        assert!(outcome.is_ok(), "commit {index}: {outcome:?}");
    }

    assert_eq!(
        goals(store, "eng-0").await,
        ["moved-on"],
        "the stale commit wrote nothing"
    );
    assert_eq!(
        store.load_engagement("acme", "eng-1").await.unwrap().unwrap().state,
        eng_1_before,
        "the repeated request id wrote nothing"
    );
    assert_eq!(goals(store, "eng-2").await, ["first-of-two"]);
    let eng_3 = store.load_engagement("acme", "eng-3").await.unwrap().unwrap().state;
    assert_eq!(eng_3, states[3], "the taken id kept its engagement");
    assert!(goals(store, "eng-new").await.is_empty());
    for id in &ids[4..] {
        assert_eq!(goals(store, id).await, ["together"], "{id}");
    }
    for index in 4..8 {
        let request = format!("req-{index}");
        assert!(store.find_idempotency_key("acme", &request).await.unwrap().is_some());
    }
    for refused in ["req-eng-0", "req-eng-3"] {
        assert!(
            store.find_idempotency_key("acme", refused).await.unwrap().is_none(),
            "the request id of a refused commit is not kept: {refused}"
        );
    }
    // What committed, committed in one transaction (PostgreSQL can tell).
    let committed = ["eng-2", "eng-new", "eng-4", "eng-5", "eng-6", "eng-7"];
    if store.backend() == Backend::Postgres {
        assert_eq!(
            writers(&db, &committed).await.len(),
            1,
            "one transaction wrote {committed:?}"
        );
    }
    // Each engagement's public events are in the outbox in its order.
    let outbox = store.read_outbox("acme", 0, None, 10_000).await.unwrap();
    for id in committed {
        let sequences: Vec<u64> = outbox
            .iter()
            .filter(|row| row.engagement == id)
            .map(|row| row.sequence)
            .collect();
        assert!(!sequences.is_empty(), "{id}");
        assert!(sequences.is_sorted(), "{id}: {sequences:?}");
    }
}

pub async fn a_request_id_twice_in_one_batch_is_stored_once(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let (ids, states) = start_many(store, model, 3).await;
    let hold = store.hold_batch_commits().await;
    let mut queue = Queue {
        store,
        commits: Vec::new(),
    };
    // A client that sent one request id with two engagements' commands.
    for (index, id) in ids.iter().enumerate().take(2) {
        let decision = decide_on(model, &states[index], record_goal("once"), t0() + days(2));
        let key = Some(idempotency_key("acme", "shared", t0() + days(2)));
        queue.push(id, states[index].sequence, decision, key).await;
    }
    let decision = decide_on(model, &states[2], record_goal("alone"), t0() + days(2));
    queue.push(&ids[2], states[2].sequence, decision, None).await;
    drop(hold);
    let outcomes = queue.outcomes().await;

    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(StoreError::DuplicateRequest)),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert_eq!(goals(store, &ids[0]).await, ["once"]);
    assert!(
        goals(store, &ids[1]).await.is_empty(),
        "the repeated request wrote nothing"
    );
    assert_eq!(goals(store, &ids[2]).await, ["alone"]);
    assert!(store.find_idempotency_key("acme", "shared").await.unwrap().is_some());
}

pub async fn a_batch_that_fails_is_written_one_commit_at_a_time(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let (ids, states) = start_many(store, model, 6).await;
    let hold = store.hold_batch_commits().await;
    let mut queue = Queue {
        store,
        commits: Vec::new(),
    };
    for (index, id) in ids.iter().enumerate() {
        let decision = decide_on(model, &states[index], record_goal("together"), t0() + days(2));
        let key = Some(idempotency_key("acme", &format!("req-{index}"), t0() + days(2)));
        if index == 3 {
            // Its outbox insert fails late in the transaction: the event id is taken.
            queue
                .push_with(id, states[index].sequence, decision, key, |outbox| {
                    outbox.last_mut().unwrap().event_id = "acme/eng-3/1".to_owned();
                })
                .await;
        } else {
            queue.push(id, states[index].sequence, decision, key).await;
        }
    }
    drop(hold);
    let outcomes = queue.outcomes().await;

    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 3 {
            assert!(matches!(outcome, Err(StoreError::Database(_))), "{outcome:?}");
        } else {
            assert!(outcome.is_ok(), "eng-{index}: {outcome:?}");
        }
    }
    for (index, id) in ids.iter().enumerate() {
        let request = format!("req-{index}");
        let stored = store.find_idempotency_key("acme", &request).await.unwrap();
        if index == 3 {
            let loaded = store.load_engagement("acme", id).await.unwrap().unwrap();
            assert_eq!(loaded.state, states[3], "nothing of the failed commit is kept");
            assert!(stored.is_none());
        } else {
            assert_eq!(goals(store, id).await, ["together"], "{id}");
            assert!(stored.is_some(), "{id}");
        }
    }
}
