//! One suite, run against every backend: each test gets its own fresh, migrated database.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The suite's modules share helpers with `pub`; nothing leaves this test crate.
#![allow(unreachable_pub)]

mod support;

mod batch;
mod engagements;
mod erasure;
mod idempotency;
mod listing;
mod models;
mod operations;
mod outbox;
mod schema;
mod timers;

/// For every `module::test` of the suite, a `sqlite::test` and a `postgres::test`.
macro_rules! suite {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (store, guard) = coachflow_store::testing::fresh_sqlite().await;
                    let url = guard.url().to_owned();
                    crate::$module::$test(crate::support::TestDb { store, url, _guard: Box::new(guard) }).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (store, guard) = coachflow_store::testing::fresh_postgres().await;
                    let url = guard.url().to_owned();
                    crate::$module::$test(crate::support::TestDb { store, url, _guard: Box::new(guard) }).await;
                }
            )*
        }
    };
}

suite! {
    schema::migrating_twice_changes_nothing,
    models::published_versions_are_numbered_and_listed,
    models::concurrent_publishes_get_distinct_versions,
    models::publishing_stores_the_idempotency_key_once,
    models::a_chosen_version_must_be_the_next,
    engagements::a_started_engagement_loads_as_decided,
    engagements::commands_replay_from_snapshot_and_tail,
    engagements::engagements_load_together_as_each_loads_alone,
    engagements::a_stale_sequence_conflicts_and_writes_nothing,
    engagements::a_taken_engagement_id_already_exists,
    engagements::concurrent_commits_on_one_sequence_have_one_winner,
    engagements::commits_together_fail_alone,
    batch::a_batch_commits_what_it_can,
    batch::a_batch_that_fails_is_written_one_commit_at_a_time,
    batch::a_request_id_twice_in_one_batch_is_stored_once,
    engagements::a_failing_step_rolls_back_the_whole_commit,
    engagements::malformed_commits_are_refused,
    engagements::unreadable_events_are_corrupt,
    engagements::history_pages_oldest_first,
    idempotency::the_key_is_stored_with_the_commit_once,
    idempotency::expired_keys_are_deleted,
    operations::an_operation_is_worked_under_a_lease_and_taken_over_when_it_ends,
    operations::an_operation_and_its_request_id_are_stored_together,
    timers::timer_rows_follow_the_effects,
    timers::claims_take_due_timers_for_a_lease,
    timers::concurrent_claimers_split_the_due_timers,
    listing::engagements_filter_and_page,
    listing::task_queues_order_and_page,
    listing::gauges_count_engagements_and_tasks,
    outbox::outbox_rows_read_in_position_order,
    outbox::a_watcher_following_positions_misses_nothing,
    outbox::relay_claims_exclude_other_relays_until_released,
    outbox::a_limited_claim_takes_a_prefix_of_each_engagement,
    outbox::an_expired_claim_is_taken_over,
    outbox::concurrent_claims_hold_disjoint_engagements,
    erasure::content_is_sealed_and_erasure_makes_it_unreadable,
    erasure::the_key_encryption_key_rotates,
}

/// The embedded default: an in-memory SQLite database works like a file.
#[tokio::test]
async fn sqlite_in_memory_database_works() {
    use coachflow_store::{Backend, Store, StoreOptions};
    let store = Store::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    let decision = support::start(
        &store,
        support::four_stage(),
        "acme",
        "eng-1",
        support::people("client-1", "coach-1"),
        support::t0(),
    )
    .await;
    let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state, decision.state);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_first_migrations_race_safely() {
    let guard = coachflow_store::testing::TempDirGuard::new();
    schema::first_migrations_race_safely(guard.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_first_migrations_race_safely() {
    let (url, guard) = coachflow_store::testing::fresh_postgres_url().await;
    schema::first_migrations_race_safely(&url).await;
    guard.cleanup().await;
}

/// `coachflow serve`'s default: a file whose directory does not exist yet.
#[tokio::test]
async fn sqlite_file_and_its_directory_are_created() {
    use coachflow_store::{Store, StoreOptions};
    let guard = coachflow_store::testing::TempDirGuard::new();
    let file = guard.path().join("data").join("nested").join("coachflow.db");
    let store = Store::connect(&format!("sqlite://{}", file.display()), StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(file.is_file());
    store.close().await.unwrap();
}
