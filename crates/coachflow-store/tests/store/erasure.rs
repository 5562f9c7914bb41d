//! Content at rest: sealed in events and snapshots, unreadable once erased (the data key
//! destroyed), while the skeleton still loads; the key-encryption key can be rotated.

use coachflow_engine::{Action, EventKind};
use coachflow_store::{KekSource, StoreOptions};
use sea_orm::{ConnectionTrait, Statement};

use crate::support::{TestDb, act, four_stage, people, start, t0};

const MARKER: &str = "MARKER-7f3c";

/// Every text column of the tables that could hold content, concatenated.
async fn raw_rows(db: &TestDb) -> String {
    let backend = db.store.connection().get_database_backend();
    let mut text = String::new();
    for (table, columns) in [
        ("events", "payload"),
        ("snapshots", "state"),
        ("outbox", "data"),
        ("engagement_tasks", "task_id"),
    ] {
        let rows = db
            .store
            .connection()
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT {columns} FROM {table}"),
            ))
            .await
            .unwrap();
        for row in rows {
            let value: String = row.try_get_by_index(0).unwrap();
            text.push_str(&value);
            text.push('\n');
        }
    }
    text
}

async fn engagement_with_content(db: &TestDb) {
    let model = four_stage();
    start(&db.store, model, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    act(
        &db.store,
        model,
        "acme",
        "eng-1",
        Action::RecordGoal {
            goal: "delegation".into(),
            title: format!("{MARKER} delegate"),
            measure: Some(format!("{MARKER} measure")),
            target: None,
            due: None,
        },
        t0(),
    )
    .await
    .unwrap();
    act(
        &db.store,
        model,
        "acme",
        "eng-1",
        Action::RecordCommitment {
            commitment: "weekly".into(),
            description: format!("{MARKER} one-to-ones"),
            owner: None,
            due: None,
        },
        t0(),
    )
    .await
    .unwrap();
}

pub async fn content_is_sealed_and_erasure_makes_it_unreadable(db: TestDb) {
    // Snapshots after every event, so a sealed snapshot is read back too.
    let store = db
        .connect(StoreOptions {
            snapshot_every: 1,
            ..StoreOptions::default()
        })
        .await;
    let db = TestDb {
        store,
        url: db.url.clone(),
        _guard: db._guard,
    };
    engagement_with_content(&db).await;
    assert!(!raw_rows(&db).await.contains(MARKER), "content is stored sealed");
    let loaded = db.store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state.goals["delegation"].title, format!("{MARKER} delegate"));
    let history = db.store.history("acme", "eng-1", 0, 1000).await.unwrap();
    assert!(history.iter().any(|event| matches!(&event.kind,
        EventKind::CommitmentRecorded { description, .. } if description.contains(MARKER))));

    act(&db.store, four_stage(), "acme", "eng-1", Action::EraseContent, t0())
        .await
        .unwrap();
    // Another store (no keys in memory) reads the skeleton without the content.
    let fresh = db.connect(StoreOptions::default()).await;
    for store in [&db.store, &fresh] {
        let loaded = store.load_engagement("acme", "eng-1").await.unwrap().unwrap();
        assert!(loaded.state.goals.contains_key("delegation"));
        assert!(loaded.state.goals["delegation"].title.is_empty());
        assert!(!serde_json::to_string(&loaded.state).unwrap().contains(MARKER));
        let history = store.history_marked("acme", "eng-1", 0, 1000).await.unwrap();
        assert!(!format!("{history:?}").contains(MARKER));
        let erased: Vec<&str> = history
            .iter()
            .filter(|(_, erased)| *erased)
            .map(|(event, _)| event.kind.type_name())
            .collect();
        assert_eq!(erased, ["goal_set", "commitment_recorded"]);
    }
    // The destroyed key is gone from its row.
    let backend = db.store.connection().get_database_backend();
    let keys = db
        .store
        .connection()
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT generation, wrapped FROM content_keys ORDER BY generation",
        ))
        .await
        .unwrap();
    let keys: Vec<(i32, Option<String>)> = keys
        .iter()
        .map(|row| (row.try_get_by_index(0).unwrap(), row.try_get_by_index(1).unwrap()))
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], (0, None));
    assert!(keys[1].1.is_some());
    // Content recorded afterwards is sealed under the new key and reads back.
    act(
        &db.store,
        four_stage(),
        "acme",
        "eng-1",
        Action::RecordGoal {
            goal: "presence".into(),
            title: "new wording".into(),
            measure: None,
            target: None,
            due: None,
        },
        t0(),
    )
    .await
    .unwrap();
    let loaded = fresh.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state.goals["presence"].title, "new wording");
}

pub async fn the_key_encryption_key_rotates(db: TestDb) {
    let old = coachflow_store::generate_kek().unwrap();
    let new = coachflow_store::generate_kek().unwrap();
    let with = |keys: &[&String]| StoreOptions {
        kek: KekSource::Keys(keys.iter().map(|key| (*key).clone()).collect()),
        ..StoreOptions::default()
    };
    let first = db.connect(with(&[&old])).await;
    let db = TestDb {
        store: first,
        url: db.url.clone(),
        _guard: db._guard,
    };
    engagement_with_content(&db).await;
    // The new key first, the old one after it: everything reads, and is rewrapped.
    let rotated = db.connect(with(&[&new, &old])).await;
    assert_eq!(rotated.content_keys_to_rewrap().await.unwrap(), 1);
    assert_eq!(rotated.rewrap_content_keys(100).await.unwrap(), 1);
    assert_eq!(rotated.content_keys_to_rewrap().await.unwrap(), 0);
    // Only the new key now.
    let only_new = db.connect(with(&[&new])).await;
    let loaded = only_new.load_engagement("acme", "eng-1").await.unwrap().unwrap();
    assert_eq!(loaded.state.goals["delegation"].title, format!("{MARKER} delegate"));
    // Without the key that wraps the data keys, nothing is read.
    let stranger = db.connect(with(&[&old])).await;
    assert!(stranger.load_engagement("acme", "eng-1").await.is_err());
}
