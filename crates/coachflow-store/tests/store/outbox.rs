use std::collections::BTreeMap;
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

/// A watcher that follows the outbox by position, waiting at holes as `WatchEvents` does,
/// sees every row, even while commits on many engagements race (rows become visible out of
/// position order; no commit here rolls back, so every hole fills).
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
                let page = store.read_outbox_all(after, 1000).await.unwrap();
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
                // Up to the first hole: a commit in flight fills it.
                for (next, row) in (after + 1..).zip(page) {
                    if row.position != next {
                        break;
                    }
                    seen.push(row);
                }
                tokio::task::yield_now().await;
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

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The rows of `rows` per engagement, in the order given.
fn by_engagement(rows: &[OutboxRow]) -> BTreeMap<String, Vec<u64>> {
    let mut engagements: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in rows {
        engagements
            .entry(format!("{}/{}", row.tenant, row.engagement))
            .or_default()
            .push(row.sequence);
    }
    engagements
}

/// Starts `count` engagements of tenant acme, each with a few goals: several outbox rows
/// each; returns every row.
async fn engagements_with_rows(store: &coachflow_store::Store, count: usize) -> Vec<OutboxRow> {
    let model = four_stage();
    for n in 0..count {
        let id = format!("eng-{n}");
        start(store, model, "acme", &id, people("client-1", "coach-1"), t0()).await;
        for goal in 0..2 {
            act(store, model, "acme", &id, goal_set(goal), t0() + days(1))
                .await
                .unwrap();
        }
    }
    store.read_outbox("acme", 0, None, 10_000).await.unwrap()
}

/// A relay claims unpublished rows in position order; another relay gets none of those
/// engagements while the claim lasts, and marked rows are never claimed again.
pub async fn relay_claims_exclude_other_relays_until_released(db: TestDb) {
    let store = &db.store;
    let all = engagements_with_rows(store, 3).await;
    let claimed = store.claim_outbox("relay-a", t0(), LEASE, 1000).await.unwrap();
    assert_eq!(claimed, all, "every unpublished row, by position");
    assert!(
        store
            .claim_outbox("relay-b", t0(), LEASE, 1000)
            .await
            .unwrap()
            .is_empty(),
        "relay b must not take engagements relay a holds"
    );
    // Relay a publishes the first engagement's rows and gives its claims up.
    let first: Vec<u64> = all
        .iter()
        .filter(|row| row.engagement == "eng-0")
        .map(|row| row.position)
        .collect();
    store.mark_outbox_sent(&first, t0()).await.unwrap();
    store.mark_outbox_sent(&first, t0()).await.unwrap();
    store.release_outbox_claims("relay-a").await.unwrap();
    let rest = store.claim_outbox("relay-b", t0(), LEASE, 1000).await.unwrap();
    let expected: Vec<OutboxRow> = all.iter().filter(|row| row.engagement != "eng-0").cloned().collect();
    assert_eq!(rest, expected, "published rows are not claimed again");
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.rows, expected.len() as u64);
    assert_eq!(backlog.oldest, Some(t0()));
    // The holder claims again: its claim is renewed, not refused.
    assert_eq!(
        store.claim_outbox("relay-b", t0(), LEASE, 1000).await.unwrap(),
        expected
    );
    let positions: Vec<u64> = expected.iter().map(|row| row.position).collect();
    store.mark_outbox_sent(&positions, t0()).await.unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!((backlog.rows, backlog.oldest), (0, None));
    assert!(
        store
            .claim_outbox("relay-a", t0(), LEASE, 1000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// With a limit, a claim holds the first rows by position: per engagement a prefix of its
/// unpublished rows, never a later row without the earlier ones.
pub async fn a_limited_claim_takes_a_prefix_of_each_engagement(db: TestDb) {
    let store = &db.store;
    let all = engagements_with_rows(store, 3).await;
    let limit = all.len() as u64 / 2;
    let claimed = store.claim_outbox("relay-a", t0(), LEASE, limit).await.unwrap();
    assert_eq!(claimed, all[..claimed.len()], "the first rows by position");
    assert_eq!(claimed.len() as u64, limit);
    let held: BTreeMap<String, Vec<u64>> = by_engagement(&claimed);
    // Relay b may only take engagements relay a claimed nothing of.
    let other = store.claim_outbox("relay-b", t0(), LEASE, 1000).await.unwrap();
    for (engagement, sequences) in by_engagement(&other) {
        assert!(
            !held.contains_key(&engagement),
            "relay b took {engagement} {sequences:?} while relay a holds its earlier rows"
        );
    }
    let untouched: Vec<OutboxRow> = all
        .iter()
        .filter(|row| !held.contains_key(&format!("{}/{}", row.tenant, row.engagement)))
        .cloned()
        .collect();
    assert_eq!(other, untouched);
}

/// A claim whose lease ended (its relay died) is taken over by another relay, rows and all.
pub async fn an_expired_claim_is_taken_over(db: TestDb) {
    let store = &db.store;
    let all = engagements_with_rows(store, 2).await;
    assert_eq!(store.claim_outbox("relay-a", t0(), LEASE, 1000).await.unwrap(), all);
    let during = t0() + chrono::Duration::seconds(29);
    assert!(
        store
            .claim_outbox("relay-b", during, LEASE, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    let after = t0() + chrono::Duration::seconds(30);
    assert_eq!(store.claim_outbox("relay-b", after, LEASE, 1000).await.unwrap(), all);
    assert!(
        store
            .claim_outbox("relay-a", after, LEASE, 1000)
            .await
            .unwrap()
            .is_empty(),
        "the old holder lost its claim"
    );
}

/// Relays claiming at the same moment never hold the same engagement, and between them
/// they take every row.
pub async fn concurrent_claims_hold_disjoint_engagements(db: TestDb) {
    let all = engagements_with_rows(&db.store, 12).await;
    for round in 0..3 {
        let claimers: Vec<_> = (0..4)
            .map(|n| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    let owner = format!("relay-{round}-{n}");
                    store.claim_outbox(&owner, t0(), LEASE, 1000).await.unwrap()
                })
            })
            .collect();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut taken = Vec::new();
        for (n, claimer) in claimers.into_iter().enumerate() {
            let rows = claimer.await.unwrap();
            for engagement in by_engagement(&rows).into_keys() {
                if let Some(other) = seen.insert(engagement.clone(), n) {
                    panic!("relays {other} and {n} both hold {engagement}");
                }
            }
            taken.extend(rows);
        }
        taken.sort_by_key(|row| row.position);
        assert_eq!(taken, all, "round {round}: together the relays take every row");
        for n in 0..4 {
            db.store
                .release_outbox_claims(&format!("relay-{round}-{n}"))
                .await
                .unwrap();
        }
    }
}
