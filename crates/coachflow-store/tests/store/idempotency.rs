use chrono::Duration;
use coachflow_store::{Commit, EngagementFilter, StoreError};

use crate::support::{TestDb, commit_decision, complete, decide_on, four_stage, idempotency_key, people, start, t0};

pub async fn the_key_is_stored_with_the_commit_once(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let started = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let key = idempotency_key("acme", "req-1", t0());
    let completed = decide_on(model, &started.state, complete("kickoff-meeting"), t0());
    commit_decision(
        store,
        "acme",
        "eng-1",
        started.state.sequence,
        &completed,
        Some(key.clone()),
        t0(),
    )
    .await
    .unwrap();
    let stored = store.find_idempotency_key("acme", "req-1").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.tenant,
            stored.request_id,
            stored.method,
            stored.request_hash,
            stored.response,
            stored.created_at,
            stored.expires_at
        ),
        (
            key.tenant.clone(),
            key.request_id.clone(),
            key.method.clone(),
            key.request_hash.clone(),
            key.response.clone(),
            key.created_at,
            key.expires_at
        )
    );
    assert!(store.find_idempotency_key("acme", "req-2").await.unwrap().is_none());
    assert!(store.find_idempotency_key("globex", "req-1").await.unwrap().is_none());

    // A second commit with the same request id, on the current state, writes nothing.
    let goal = decide_on(
        model,
        &completed.state,
        coachflow_engine::Action::RecordGoal {
            goal: "goal-1".into(),
            title: "Chair fewer meetings".into(),
            measure: None,
            target: None,
            due: None,
        },
        t0(),
    );
    let error = commit_decision(store, "acme", "eng-1", completed.state.sequence, &goal, Some(key), t0())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::DuplicateRequest), "{error:?}");
    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state, completed.state);
    assert_eq!(
        store.history("acme", "eng-1", 0, 1000).await.unwrap().len() as u64,
        completed.state.sequence
    );
    let summary = &store
        .list_engagements("acme", &EngagementFilter::default(), None, 1)
        .await
        .unwrap()[0];
    assert_eq!(summary.sequence, completed.state.sequence);

    // With its own request id the command goes through.
    commit_decision(
        store,
        "acme",
        "eng-1",
        completed.state.sequence,
        &goal,
        Some(idempotency_key("acme", "req-2", t0())),
        t0(),
    )
    .await
    .unwrap();
}

pub async fn expired_keys_are_deleted(db: TestDb) {
    let store = &db.store;
    let started = start(
        store,
        four_stage(),
        "acme",
        "eng-1",
        people("client-1", "coach-1"),
        t0(),
    )
    .await;
    // A commit without events records only its key (a command that changed nothing).
    for hours in 1..=3 {
        let mut key = idempotency_key("acme", &format!("req-{hours}"), t0());
        key.expires_at = t0() + Duration::hours(hours);
        store
            .commit(Commit {
                tenant: "acme",
                engagement: "eng-1",
                expected_sequence: started.state.sequence,
                events: &[],
                effects: &[],
                state: &started.state,
                outbox: &[],
                idempotency: Some(key),
                now: t0(),
            })
            .await
            .unwrap();
    }
    assert_eq!(store.delete_expired_idempotency_keys(t0()).await.unwrap(), 0);
    assert_eq!(
        store
            .delete_expired_idempotency_keys(t0() + Duration::hours(2))
            .await
            .unwrap(),
        2
    );
    assert!(store.find_idempotency_key("acme", "req-1").await.unwrap().is_none());
    assert!(store.find_idempotency_key("acme", "req-2").await.unwrap().is_none());
    assert!(store.find_idempotency_key("acme", "req-3").await.unwrap().is_some());
    assert_eq!(
        store
            .delete_expired_idempotency_keys(t0() + Duration::hours(2))
            .await
            .unwrap(),
        0
    );
    // The commits without events left the engagement as it was.
    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state, started.state);
}
