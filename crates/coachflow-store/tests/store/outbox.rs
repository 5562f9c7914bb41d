use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coachflow_store::OutboxRow;

use crate::support::{TestDb, act, complete, days, four_stage, outbox_for, people, start, t0};

fn ids(rows: &[OutboxRow]) -> Vec<String> {
    rows.iter().map(|row| row.event_id.clone()).collect()
}

pub async fn outbox_rows_read_in_position_order(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let first = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let second = start(store, model, "acme", "eng-2", people("client-2", "coach-1"), t0()).await;
    let completed = act(
        store,
        model,
        "acme",
        "eng-1",
        complete("kickoff-meeting"),
        t0() + days(1),
    )
    .await
    .unwrap();
    let other = start(store, model, "globex", "eng-1", people("client-1", "coach-1"), t0()).await;

    let first_rows = outbox_for("acme", "eng-1", &first.events);
    let second_rows = outbox_for("acme", "eng-2", &second.events);
    let completed_rows = outbox_for("acme", "eng-1", &completed.events);
    assert!(!first_rows.is_empty() && !completed_rows.is_empty());

    let all = store.read_outbox("acme", 0, None, 1000).await.unwrap();
    let expected: Vec<_> = first_rows
        .iter()
        .chain(&second_rows)
        .chain(&completed_rows)
        .map(|row| row.event_id.clone())
        .collect();
    assert_eq!(ids(&all), expected);
    assert!(all.windows(2).all(|pair| pair[0].position < pair[1].position));
    // Rows keep what was written.
    let written = &completed_rows[0];
    let read = all.iter().find(|row| row.event_id == written.event_id).unwrap();
    assert_eq!(
        (
            read.tenant.as_str(),
            read.engagement.as_str(),
            read.sequence,
            &read.event_type,
            &read.routing_key,
            &read.subject,
            read.time,
            &read.data
        ),
        (
            "acme",
            "eng-1",
            written.sequence,
            &written.event_type,
            &written.routing_key,
            &written.subject,
            written.time,
            &written.data
        )
    );

    let of_first = store.read_outbox("acme", 0, Some("eng-1"), 1000).await.unwrap();
    let expected_first: Vec<_> = first_rows
        .iter()
        .chain(&completed_rows)
        .map(|row| row.event_id.clone())
        .collect();
    assert_eq!(ids(&of_first), expected_first);

    let page = store.read_outbox("acme", all[2].position, None, 2).await.unwrap();
    assert_eq!(page, all[3..5]);
    assert!(
        store
            .read_outbox("acme", all.last().unwrap().position, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.max_outbox_position("acme").await.unwrap(),
        all.last().unwrap().position
    );

    let globex = store.read_outbox("globex", 0, None, 1000).await.unwrap();
    assert_eq!(ids(&globex), ids_of(&outbox_for("globex", "eng-1", &other.events)));
    assert_eq!(
        store.max_outbox_position("globex").await.unwrap(),
        globex.last().unwrap().position
    );
    assert_eq!(store.max_outbox_position("initech").await.unwrap(), 0);

    // The whole outbox, every tenant, by position.
    let everything = store.read_outbox_all(0, 1000).await.unwrap();
    let mut expected: Vec<OutboxRow> = all.iter().chain(&globex).cloned().collect();
    expected.sort_by_key(|row| row.position);
    assert_eq!(everything, expected);
    let after = store.read_outbox_all(everything[1].position, 3).await.unwrap();
    assert_eq!(after, everything[2..5]);
}

fn ids_of(rows: &[coachflow_store::NewOutboxEvent]) -> Vec<String> {
    rows.iter().map(|row| row.event_id.clone()).collect()
}

/// A watcher that follows the outbox by position sees every row, even while commits on
/// many engagements race (rows become visible in position order).
pub async fn a_watcher_following_positions_misses_nothing(db: TestDb) {
    let model = four_stage();
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let id = format!("eng-{n}");
                start(&store, model, "acme", &id, people("client-1", "coach-1"), t0()).await;
                for goal in 0..4 {
                    crate::support::act(&store, model, "acme", &id, goal_set(goal), t0() + days(1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let writers_done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let store = db.store.clone();
        let writers_done = writers_done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<OutboxRow> = Vec::new();
            loop {
                // Once the writers are done, an empty read means everything was seen.
                let finished = writers_done.load(Ordering::SeqCst);
                let after = seen.last().map_or(0, |row| row.position);
                let page = store.read_outbox("acme", after, None, 1000).await.unwrap();
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
                seen.extend(page);
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = watcher.await.unwrap();
    let all = db.store.read_outbox("acme", 0, None, 10_000).await.unwrap();
    assert!(all.len() >= 8 * 5, "every start and goal has a public event");
    assert_eq!(ids(&seen), ids(&all), "the watcher missed rows");
}

fn goal_set(n: u32) -> coachflow_engine::Action {
    coachflow_engine::Action::RecordGoal {
        goal: format!("goal-{n}"),
        title: "Delegate more".into(),
        measure: None,
        target: None,
        due: None,
    }
}
