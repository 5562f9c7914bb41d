use chrono::Duration;
use coachflow_engine::{Action, Decision, EngagementState};
use coachflow_store::entity::snapshot;
use coachflow_store::{Commit, EngagementFilter, StoreError, StoreOptions};
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::support::{
    TestDb, act, advance, commit_decision, complete, days, decide_on, four_stage, idempotency_key, outbox_for, people,
    record_goal, stale_and_taken, start, start_many, t0, timers_after,
};

async fn timer_rows(db: &TestDb) -> std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    coachflow_store::entity::timer::Entity::find()
        .all(db.store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.timer_id, row.fires_at))
        .collect()
}

/// A second store on the test's database that writes a snapshot every 3 events.
async fn snapshotting_every_3(db: &TestDb) -> coachflow_store::Store {
    db.connect(StoreOptions {
        snapshot_every: 3,
        ..StoreOptions::default()
    })
    .await
}

pub async fn a_started_engagement_loads_as_decided(db: TestDb) {
    let store = &db.store;
    let decision = start(
        store,
        four_stage(),
        "acme",
        "eng-1",
        people("client-1", "coach-1"),
        t0(),
    )
    .await;
    assert!(decision.state.sequence > 1, "starting emits several events");

    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state, decision.state);
    assert_eq!((loaded.tenant.as_str(), loaded.id.as_str()), ("acme", "eng-1"));
    assert_eq!(loaded.created_at, t0());
    assert!(store.load_engagement("acme", "eng-2").await.unwrap().is_none());
    assert!(store.load_engagement("globex", "eng-1").await.unwrap().is_none());

    assert_eq!(store.history("acme", "eng-1", 0, 1000).await.unwrap(), decision.events);

    let listed = store
        .list_engagements("acme", &EngagementFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let summary = &listed[0];
    let state = &decision.state;
    let open: Vec<_> = state.open_tasks().collect();
    assert!(!open.is_empty());
    assert_eq!(summary.model_key, "four-stage");
    assert_eq!(summary.model_version, 1);
    assert_eq!(summary.status, "active");
    assert_eq!(summary.phase.as_deref(), Some("awareness"));
    assert_eq!(summary.phase_iteration, Some(1));
    assert_eq!(summary.sequence, state.sequence);
    assert_eq!(summary.open_tasks as usize, open.len());
    assert_eq!(summary.overdue_tasks, 0);
    assert_eq!(summary.next_due_at, open.iter().filter_map(|task| task.due_at).min());
    assert_eq!((summary.created_at, summary.updated_at), (t0(), t0()));
    assert_eq!(
        summary.people,
        [
            ("client", "client-1"),
            ("coach", "coach-1"),
            ("hr", "hr-1"),
            ("sponsor", "sponsor-1"),
            ("stakeholder", "stakeholder-1"),
            ("stakeholder", "stakeholder-2"),
        ]
        .map(|(role, person)| (role.to_owned(), person.to_owned()))
    );

    let expected_timers = timers_after(&[&decision]);
    assert!(!expected_timers.is_empty());
    assert_eq!(timer_rows(&db).await, expected_timers);
}

pub async fn commands_replay_from_snapshot_and_tail(db: TestDb) {
    let store = snapshotting_every_3(&db).await;
    let model = four_stage();
    let mut last = start(&store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let mut snapshot_sequences = Vec::new();
    let mut loads_with_tail = 0;
    let mut check = |state: &EngagementState, snapshot: Option<snapshot::Model>| {
        let snapshot = snapshot.expect("a snapshot exists once 3 events were appended");
        assert!(snapshot.sequence as u64 <= state.sequence);
        assert!(
            state.sequence - (snapshot.sequence as u64) < 3 + 20,
            "snapshots keep up"
        );
        if (snapshot.sequence as u64) < state.sequence {
            loads_with_tail += 1;
        }
        snapshot_sequences.push(snapshot.sequence);
    };

    let steps: Vec<(Option<Action>, chrono::DateTime<chrono::Utc>)> = vec![
        (Some(complete("kickoff-meeting")), t0() + days(1)),
        (None, t0() + days(30)),
        (Some(record_goal("goal-1")), t0() + days(30)),
        (Some(Action::Suspend { reason: None }), t0() + days(31)),
        (Some(Action::Resume), t0() + days(32)),
    ];
    for (action, now) in steps {
        let acted = match action {
            Some(action) => {
                last = act(&store, model, "acme", "eng-1", action, now).await.unwrap();
                true
            }
            None => {
                advance(&store, model, "acme", "eng-1", now).await;
                false
            }
        };
        let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
        if acted {
            assert_eq!(loaded.state, last.state);
        }
        // A store that never read the snapshot replays the whole log to the same state.
        let from_scratch = db.store.history("acme", "eng-1", 0, 10_000).await.unwrap();
        let replayed = from_scratch
            .iter()
            .fold(EngagementState::default(), coachflow_engine::apply);
        assert_eq!(loaded.state, replayed);
        let snapshot = snapshot::Entity::find_by_id(("acme".to_owned(), "eng-1".to_owned()))
            .one(store.connection())
            .await
            .unwrap();
        check(&loaded.state, snapshot);
    }
    assert!(loads_with_tail > 0, "some loads replayed events after the snapshot");
    snapshot_sequences.dedup();
    assert!(
        snapshot_sequences.len() > 2,
        "snapshots were rewritten: {snapshot_sequences:?}"
    );
    assert!(snapshot_sequences.windows(2).all(|pair| pair[0] < pair[1]));
}

pub async fn engagements_load_together_as_each_loads_alone(db: TestDb) {
    let store = snapshotting_every_3(&db).await;
    let model = four_stage();
    // A snapshot with events after it, a start alone, the same id in another tenant.
    start(&store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    act(
        &store,
        model,
        "acme",
        "eng-1",
        complete("kickoff-meeting"),
        t0() + days(1),
    )
    .await
    .unwrap();
    act(&store, model, "acme", "eng-1", record_goal("goal-1"), t0() + days(2))
        .await
        .unwrap();
    start(&store, model, "acme", "eng-2", people("client-2", "coach-1"), t0()).await;
    start(&store, model, "globex", "eng-1", people("client-3", "coach-2"), t0()).await;
    let snapshot = snapshot::Entity::find_by_id(("acme".to_owned(), "eng-1".to_owned()))
        .one(store.connection())
        .await
        .unwrap()
        .expect("eng-1 has a snapshot");
    let alone = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert!((snapshot.sequence as u64) < alone.state.sequence, "eng-1 loads a tail");

    let wanted = [
        ("acme", "eng-1"),
        ("acme", "missing"),
        ("globex", "eng-1"),
        ("acme", "eng-2"),
    ];
    let names: Vec<(String, String)> = wanted
        .iter()
        .map(|(tenant, id)| ((*tenant).to_owned(), (*id).to_owned()))
        .collect();
    let mut together = store.load_engagements(&names).await.unwrap();
    together.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
    let mut each = Vec::new();
    for (tenant, id) in wanted {
        if let Some(loaded) = store.load_engagement(tenant, id).await.unwrap() {
            each.push(loaded);
        }
    }
    each.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
    assert_eq!(each.len(), 3, "the missing engagement is left out");
    assert_eq!(together, each);
    assert!(store.load_engagements(&[]).await.unwrap().is_empty());
}

pub async fn a_stale_sequence_conflicts_and_writes_nothing(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let started = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    let winner = decide_on(model, &loaded.state, complete("kickoff-meeting"), t0() + days(1));
    let loser = decide_on(model, &loaded.state, record_goal("goal-1"), t0() + days(1));
    commit_decision(
        store,
        "acme",
        "eng-1",
        loaded.state.sequence,
        &winner,
        None,
        t0() + days(1),
    )
    .await
    .unwrap();

    let error = commit_decision(
        store,
        "acme",
        "eng-1",
        loaded.state.sequence,
        &loser,
        Some(idempotency_key("acme", "req-loser", t0())),
        t0() + days(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::Conflict), "{error:?}");

    let reloaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(reloaded.state, winner.state);
    let history = store.history("acme", "eng-1", 0, 1000).await.unwrap();
    assert_eq!(history.len() as u64, winner.state.sequence);
    let outbox = store.read_outbox("acme", 0, None, 1000).await.unwrap();
    let expected_ids: Vec<String> = outbox_for("acme", "eng-1", &started.events)
        .into_iter()
        .chain(outbox_for("acme", "eng-1", &winner.events))
        .map(|row| row.event_id)
        .collect();
    assert_eq!(
        outbox.into_iter().map(|row| row.event_id).collect::<Vec<_>>(),
        expected_ids
    );
    assert_eq!(timer_rows(&db).await, timers_after(&[&started, &winner]));
    assert!(store.find_idempotency_key("acme", "req-loser").await.unwrap().is_none());

    // Deciding again on the new state succeeds.
    act(store, model, "acme", "eng-1", record_goal("goal-1"), t0() + days(1))
        .await
        .unwrap();
}

pub async fn a_taken_engagement_id_already_exists(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let first = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let second = decide_on(
        model,
        &EngagementState::default(),
        crate::support::start_action(people("client-2", "coach-2")),
        t0() + days(1),
    );
    let error = commit_decision(
        store,
        "acme",
        "eng-1",
        0,
        &second,
        Some(idempotency_key("acme", "req-2", t0())),
        t0() + days(1),
    )
    .await
    .unwrap_err();
    match error {
        StoreError::AlreadyExists(what) => assert!(what.contains("eng-1"), "{what}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state, first.state);
    assert_eq!(
        store.history("acme", "eng-1", 0, 1000).await.unwrap().len() as u64,
        first.state.sequence
    );
    assert!(store.find_idempotency_key("acme", "req-2").await.unwrap().is_none());
    // The id is free in another tenant.
    commit_decision(store, "globex", "eng-1", 0, &second, None, t0() + days(1))
        .await
        .unwrap();
}

pub async fn concurrent_commits_on_one_sequence_have_one_winner(db: TestDb) {
    let model = four_stage();
    start(&db.store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let loaded = db.store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    let expected = loaded.state.sequence;
    let mut commits = Vec::new();
    for n in 0..20 {
        let store = db.store.clone();
        let decision = decide_on(model, &loaded.state, record_goal(&format!("goal-{n}")), t0() + days(1));
        commits.push(tokio::spawn(async move {
            let result = commit_decision(&store, "acme", "eng-1", expected, &decision, None, t0() + days(1)).await;
            (result, decision)
        }));
    }
    let mut winners: Vec<Decision> = Vec::new();
    let mut conflicts = 0;
    for commit in commits {
        match commit.await.unwrap() {
            (Ok(()), decision) => winners.push(decision),
            (Err(StoreError::Conflict), _) => conflicts += 1,
            (Err(other), _) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 19));
    let winner = &winners[0];
    let reloaded = db.store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(reloaded.state, winner.state);
    let sequences: Vec<u64> = db
        .store
        .history("acme", "eng-1", 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|event| event.sequence)
        .collect();
    assert_eq!(sequences, (1..=winner.state.sequence).collect::<Vec<_>>(), "no gaps");
    assert_eq!(reloaded.state.goals.len(), 1);
}

pub async fn a_failing_step_rolls_back_the_whole_commit(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let started = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let decision = decide_on(model, &started.state, complete("kickoff-meeting"), t0() + days(1));
    let mut outbox = outbox_for("acme", "eng-1", &decision.events);
    assert!(!outbox.is_empty());
    // The outbox insert fails late in the transaction: its event id is taken.
    outbox.last_mut().unwrap().event_id = "acme/eng-1/1".to_owned();
    let error = store
        .commit(Commit {
            tenant: "acme",
            engagement: "eng-1",
            expected_sequence: started.state.sequence,
            events: &decision.events,
            effects: &decision.effects,
            state: &decision.state,
            outbox: &outbox,
            idempotency: Some(idempotency_key("acme", "req-1", t0())),
            now: t0() + days(1),
        })
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Database(_)), "{error:?}");

    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state, started.state);
    let summary = &store
        .list_engagements("acme", &EngagementFilter::default(), None, 10)
        .await
        .unwrap()[0];
    assert_eq!(summary.sequence, started.state.sequence);
    assert_eq!(summary.updated_at, t0());
    assert_eq!(
        store.history("acme", "eng-1", 0, 1000).await.unwrap().len() as u64,
        started.state.sequence
    );
    assert_eq!(
        store.read_outbox("acme", 0, None, 1000).await.unwrap().len(),
        outbox_for("acme", "eng-1", &started.events).len()
    );
    assert_eq!(timer_rows(&db).await, timers_after(&[&started]));
    assert!(store.find_idempotency_key("acme", "req-1").await.unwrap().is_none());
    let tasks = store
        .list_tasks(
            "acme",
            &coachflow_store::TaskFilter {
                assignee: "coach-1".into(),
                queue: coachflow_store::TaskQueue::Open,
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(tasks.len(), started.state.open_tasks().count());

    // The same decision with its own outbox ids commits.
    commit_decision(
        store,
        "acme",
        "eng-1",
        started.state.sequence,
        &decision,
        None,
        t0() + days(1),
    )
    .await
    .unwrap();
}

pub async fn malformed_commits_are_refused(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let decision = decide_on(
        model,
        &EngagementState::default(),
        crate::support::start_action(people("c", "k")),
        t0(),
    );
    let empty = EngagementState::default();
    let commit = |expected_sequence, events, state| Commit {
        tenant: "acme",
        engagement: "eng-1",
        expected_sequence,
        events,
        effects: &[],
        state,
        outbox: &[],
        idempotency: None,
        now: t0(),
    };
    let cases = [
        commit(0, &decision.events[1..], &decision.state),
        commit(1, &decision.events, &decision.state),
        commit(0, &decision.events[..1], &decision.state),
        commit(0, &[], &empty),
    ];
    for case in cases {
        let error = store.commit(case).await.unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    }
    assert!(store.load_engagement("acme", "eng-1").await.unwrap().is_none());
}

pub async fn unreadable_events_are_corrupt(db: TestDb) {
    let store = &db.store;
    start(
        store,
        four_stage(),
        "acme",
        "eng-1",
        people("client-1", "coach-1"),
        t0(),
    )
    .await;
    store
        .connection()
        .execute_unprepared("UPDATE events SET payload = '{\"not\": \"an event\"}' WHERE sequence = 2")
        .await
        .unwrap();
    for error in [
        store.load_engagement("acme", "eng-1").await.unwrap_err(),
        store.history("acme", "eng-1", 0, 100).await.unwrap_err(),
    ] {
        match error {
            StoreError::Corrupt(message) => {
                assert!(
                    message.contains("acme/eng-1") && message.contains("event 2"),
                    "{message}"
                )
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

pub async fn history_pages_oldest_first(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let started = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let completed = act(
        store,
        model,
        "acme",
        "eng-1",
        complete("kickoff-meeting"),
        t0() + Duration::hours(5),
    )
    .await
    .unwrap();
    start(store, model, "acme", "eng-2", people("client-2", "coach-1"), t0()).await;
    let all: Vec<_> = started.events.iter().chain(&completed.events).cloned().collect();

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.history("acme", "eng-1", after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().sequence;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(store.history("acme", "eng-1", 2, 2).await.unwrap(), all[2..4]);
    assert!(
        store
            .history("acme", "eng-1", all.len() as u64, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.history("acme", "eng-9", 0, 10).await.unwrap().is_empty());
}

/// Commits of many engagements at once (they share batch transactions as they come): one
/// whose guard fails and one whose request id was used are refused on their
/// own, with nothing of theirs written, and every other is committed whole.
pub async fn commits_together_fail_alone(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let (ids, states) = start_many(store, model, 12).await;
    stale_and_taken(store, model, &states).await;
    let mut states_before = Vec::new();
    for id in &ids[..2] {
        states_before.push(store.load_engagement("acme", id).await.unwrap().unwrap().state);
    }

    let mut commits = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let store = store.clone();
        let id = id.clone();
        let state = if index == 1 {
            states_before[1].clone()
        } else {
            states[index].clone()
        };
        commits.push(tokio::spawn(async move {
            let decision = decide_on(model, &state, record_goal("together"), t0() + days(2));
            let idempotency = (index == 1).then(|| idempotency_key("acme", "taken", t0() + days(2)));
            commit_decision(
                &store,
                "acme",
                &id,
                state.sequence,
                &decision,
                idempotency,
                t0() + days(2),
            )
            .await
        }));
    }
    let mut outcomes = Vec::new();
    for commit in commits {
        outcomes.push(commit.await.unwrap());
    }
    assert!(matches!(outcomes[0], Err(StoreError::Conflict)), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(StoreError::DuplicateRequest)),
        "{:?}",
        outcomes[1]
    );
    for (index, outcome) in outcomes.iter().enumerate().skip(2) {
        assert!(outcome.is_ok(), "eng-{index}: {outcome:?}");
    }

    for (index, id) in ids.iter().enumerate() {
        let loaded = store.load_engagement("acme", id).await.unwrap().unwrap();
        let goals: Vec<&str> = loaded.state.goals.keys().map(String::as_str).collect();
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
        match index {
            0 => assert_eq!(goals, ["moved-on"], "the stale commit wrote nothing"),
            1 => assert_eq!(loaded.state, states_before[1], "the duplicate wrote nothing"),
            _ => assert_eq!(goals, ["together"], "{id}"),
        }
    }
}
