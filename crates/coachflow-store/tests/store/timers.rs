use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use coachflow_engine::{Decision, Effect};
use coachflow_store::entity::timer;
use coachflow_store::{Commit, DueTimer, Store};
use sea_orm::EntityTrait;

use crate::support::{TestDb, act, complete, days, four_stage, people, start, t0, timers_after};

const LEASE: StdDuration = StdDuration::from_secs(300);

async fn rows(store: &Store) -> Vec<timer::Model> {
    timer::Entity::find().all(store.connection()).await.unwrap()
}

async fn timer_table(store: &Store, engagement: &str) -> BTreeMap<String, DateTime<Utc>> {
    rows(store)
        .await
        .into_iter()
        .filter(|row| row.engagement == engagement)
        .map(|row| (row.timer_id, row.fires_at))
        .collect()
}

/// Commits only timer effects (no events) to the engagement at `sequence`.
async fn commit_effects(store: &Store, decision: &Decision, effects: &[Effect]) {
    store
        .commit(Commit {
            tenant: "acme",
            engagement: "eng-1",
            expected_sequence: decision.state.sequence,
            events: &[],
            effects,
            state: &decision.state,
            outbox: &[],
            idempotency: None,
            now: t0(),
        })
        .await
        .unwrap();
}

pub async fn timer_rows_follow_the_effects(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let started = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    assert_eq!(timer_table(store, "eng-1").await, timers_after(&[&started]));
    assert!(
        rows(store)
            .await
            .iter()
            .all(|row| row.claimed_by.is_none() && row.claimed_until.is_none())
    );

    // Completing the kick-off cancels its timers and schedules the next task's.
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
    assert!(
        completed
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::CancelTimer { .. }))
    );
    assert!(
        completed
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::ScheduleTimer { .. }))
    );
    let expected = timers_after(&[&started, &completed]);
    assert_eq!(timer_table(store, "eng-1").await, expected);
    assert_eq!(store.count_timers().await.unwrap(), expected.len() as u64);

    // Scheduling a claimed timer again moves it and clears the claim.
    let claimed = store
        .claim_due_timers("runner-a", t0() + days(365), LEASE, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), expected.len());
    let (moved, _) = expected.iter().next().unwrap();
    let (cancelled, _) = expected.iter().nth(1).unwrap();
    let new_time = t0() + days(40);
    commit_effects(
        store,
        &completed,
        &[
            Effect::ScheduleTimer {
                id: moved.clone(),
                at: t0() + days(39),
            },
            Effect::CancelTimer { id: cancelled.clone() },
            // The last effect on a timer wins.
            Effect::ScheduleTimer {
                id: moved.clone(),
                at: new_time,
            },
        ],
    )
    .await;
    let after = rows(store).await;
    let moved_row = after.iter().find(|row| &row.timer_id == moved).unwrap();
    assert_eq!(moved_row.fires_at, new_time);
    assert_eq!((moved_row.claimed_by.as_deref(), moved_row.claimed_until), (None, None));
    assert!(after.iter().all(|row| &row.timer_id != cancelled));
    assert_eq!(after.len(), expected.len() - 1);
    // The other rows keep their claims.
    assert!(
        after
            .iter()
            .filter(|row| &row.timer_id != moved)
            .all(|row| row.claimed_by.as_deref() == Some("runner-a"))
    );
}

pub async fn claims_take_due_timers_for_a_lease(db: TestDb) {
    let store = &db.store;
    let model = four_stage();
    let first = start(store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let second = start(
        store,
        model,
        "acme",
        "eng-2",
        people("client-2", "coach-1"),
        t0() + days(1),
    )
    .await;
    let mut all: Vec<DueTimer> = [("eng-1", &first), ("eng-2", &second)]
        .into_iter()
        .flat_map(|(engagement, decision)| {
            timers_after(&[decision])
                .into_iter()
                .map(move |(timer_id, fires_at)| DueTimer {
                    tenant: "acme".into(),
                    engagement: engagement.into(),
                    timer_id,
                    fires_at,
                })
        })
        .collect();
    all.sort_by(|a, b| (a.fires_at, &a.engagement, &a.timer_id).cmp(&(b.fires_at, &b.engagement, &b.timer_id)));
    let earliest = all[0].fires_at;
    assert_eq!(
        store.next_timer_at(earliest - Duration::days(1)).await.unwrap(),
        Some(earliest)
    );

    // Nothing is due before the earliest timer.
    assert!(
        store
            .claim_due_timers("runner-a", earliest - Duration::seconds(1), LEASE, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Everything due by `now`, soonest first; later timers stay.
    let now = all[2].fires_at;
    let due: Vec<DueTimer> = all.iter().filter(|timer| timer.fires_at <= now).cloned().collect();
    assert!(due.len() >= 3 && due.len() < all.len());
    let claimed = store.claim_due_timers("runner-a", now, LEASE, 100).await.unwrap();
    assert_eq!(claimed, due);
    // Claimed timers are not due again until their lease ends.
    assert_eq!(
        store.next_timer_at(now).await.unwrap(),
        Some(all[due.len()].fires_at.min(now + Duration::seconds(300)))
    );

    // Nobody else gets them while the lease lasts...
    let during_lease = now + Duration::seconds(299);
    assert!(
        store
            .claim_due_timers("runner-b", during_lease, LEASE, 100)
            .await
            .unwrap()
            .iter()
            .all(|timer| !due.contains(timer))
    );
    // ...and after it anyone does, within the limit, soonest first.
    let after_lease = now + Duration::seconds(301);
    let reclaimed = store.claim_due_timers("runner-b", after_lease, LEASE, 1).await.unwrap();
    assert_eq!(reclaimed, due[..1]);

    // A release by another owner changes nothing; by the owner it frees the timer at once.
    let timer = &due[1];
    store.release_timer(timer, "runner-b").await.unwrap();
    assert!(
        !store
            .claim_due_timers("runner-c", now, LEASE, 100)
            .await
            .unwrap()
            .contains(timer)
    );
    store.release_timer(timer, "runner-a").await.unwrap();
    assert_eq!(
        store.claim_due_timers("runner-c", now, LEASE, 100).await.unwrap(),
        std::slice::from_ref(timer)
    );

    // Deleting needs the time it fires at: a timer moved meanwhile stays.
    let count = store.count_timers().await.unwrap();
    let mut moved = timer.clone();
    moved.fires_at += Duration::seconds(1);
    store.delete_timer(&moved).await.unwrap();
    assert_eq!(store.count_timers().await.unwrap(), count);
    store.delete_timer(timer).await.unwrap();
    assert_eq!(store.count_timers().await.unwrap(), count - 1);
    assert_eq!(store.count_timers().await.unwrap() as usize, all.len() - 1);
}

pub async fn concurrent_claimers_split_the_due_timers(db: TestDb) {
    let model = four_stage();
    let started = start(&db.store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    let effects: Vec<Effect> = (0..200)
        .map(|n| Effect::ScheduleTimer {
            id: format!("bulk-{n:03}"),
            at: t0() + Duration::seconds(n),
        })
        .collect();
    commit_effects(&db.store, &started, &effects).await;
    let now = t0() + days(1);
    let engine_timers_due = timers_after(&[&started]).values().filter(|at| **at <= now).count();

    let mut claimers = Vec::new();
    for owner in ["runner-a", "runner-b"] {
        let store = db.connect(Default::default()).await;
        claimers.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = store.claim_due_timers(owner, now, LEASE, 7).await.unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|timer| timer.timer_id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for claimer in claimers {
        let claimed = claimer.await.unwrap();
        total += claimed.len();
        seen.extend(claimed);
    }
    assert_eq!(total, seen.len(), "no timer was claimed twice");
    assert_eq!(seen.len(), 200 + engine_timers_due);
    assert!((0..200).all(|n| seen.contains(&format!("bulk-{n:03}"))));
    let owners: BTreeSet<_> = rows(&db.store)
        .await
        .into_iter()
        .filter_map(|row| row.claimed_by)
        .collect();
    assert!(!owners.is_empty() && owners.is_subset(&BTreeSet::from(["runner-a".to_owned(), "runner-b".to_owned()])));
}
