use coachflow_store::{Store, StoreOptions};

use crate::support::TestDb;

pub async fn migrating_twice_changes_nothing(db: TestDb) {
    let store = &db.store;
    // fresh_* migrated once already.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.count_timers().await.unwrap(), 0);
    assert_eq!(store.max_outbox_position("acme").await.unwrap(), 0);
    assert!(store.list_models("acme", None, 10).await.unwrap().is_empty());
}

/// Replicas starting together on one empty database all migrate without error.
pub async fn first_migrations_race_safely(url: &str) {
    let mut migrations = Vec::new();
    for _ in 0..3 {
        let store = Store::connect(url, StoreOptions::default()).await.unwrap();
        migrations.push(tokio::spawn(async move {
            store.migrate().await?;
            store.count_timers().await
        }));
    }
    for migration in migrations {
        assert_eq!(migration.await.unwrap().unwrap(), 0);
    }
}
