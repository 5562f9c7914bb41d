use coachflow_store::{NewModelVersion, StoreError, StoredModel};

use crate::support::{TestDb, days, idempotency_key, t0};

fn new_model(tenant: &str, key: &str, revision: u32) -> NewModelVersion {
    NewModelVersion {
        tenant: tenant.to_owned(),
        key: key.to_owned(),
        version: 0,
        display_name: format!("{key} revision {revision}"),
        description: "A coaching method".to_owned(),
        source_format: "yaml".to_owned(),
        source: format!("metadata: {{key: {key}}}\n# revision {revision}\n"),
        document: format!(r#"{{"metadata":{{"key":"{key}"}},"revision":{revision}}}"#),
        checksum: format!("{revision:064x}"),
        created_at: t0() + days(i64::from(revision)),
    }
}

pub async fn published_versions_are_numbered_and_listed(db: TestDb) {
    let store = &db.store;
    for revision in 1..=3 {
        let stored = store
            .publish_model(new_model("acme", "four-stage", revision), None)
            .await
            .unwrap();
        assert_eq!(stored.version, revision);
        assert_eq!(stored.display_name, format!("four-stage revision {revision}"));
    }
    store
        .publish_model(new_model("acme", "columbia", 1), None)
        .await
        .unwrap();
    store
        .publish_model(new_model("acme", "seven-step", 1), None)
        .await
        .unwrap();
    store
        .publish_model(new_model("acme", "seven-step", 2), None)
        .await
        .unwrap();
    // Another tenant's models are its own, numbered from 1.
    let other = store
        .publish_model(new_model("globex", "four-stage", 9), None)
        .await
        .unwrap();
    assert_eq!(other.version, 1);

    let latest = store.get_model("acme", "four-stage", None).await.unwrap().unwrap();
    assert_eq!(latest.version, 3);
    let expected = new_model("acme", "four-stage", 3);
    assert_eq!(
        (
            latest.source,
            latest.document,
            latest.checksum,
            latest.created_at,
            latest.source_format
        ),
        (
            expected.source,
            expected.document,
            expected.checksum,
            expected.created_at,
            expected.source_format
        )
    );
    let second = store.get_model("acme", "four-stage", Some(2)).await.unwrap().unwrap();
    assert_eq!(
        (second.version, second.display_name.as_str()),
        (2, "four-stage revision 2")
    );
    assert!(store.get_model("acme", "four-stage", Some(4)).await.unwrap().is_none());
    assert!(store.get_model("acme", "missing", None).await.unwrap().is_none());
    assert!(store.get_model("initech", "four-stage", None).await.unwrap().is_none());

    // The latest version of each key, by key, two at a time.
    let first_page = store.list_models("acme", None, 2).await.unwrap();
    let listed: Vec<_> = first_page
        .iter()
        .map(|model| (model.key.as_str(), model.version))
        .collect();
    assert_eq!(listed, [("columbia", 1), ("four-stage", 3)]);
    let second_page = store.list_models("acme", Some("four-stage"), 2).await.unwrap();
    let listed: Vec<_> = second_page
        .iter()
        .map(|model| (model.key.as_str(), model.version))
        .collect();
    assert_eq!(listed, [("seven-step", 2)]);
    assert!(
        store
            .list_models("acme", Some("seven-step"), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.list_models("acme", None, 0).await.unwrap().is_empty());

    // Versions newest first, paged by version.
    let versions =
        |models: Vec<coachflow_store::StoredModel>| models.iter().map(|model| model.version).collect::<Vec<_>>();
    assert_eq!(
        versions(store.list_model_versions("acme", "four-stage", None, 10).await.unwrap()),
        [3, 2, 1]
    );
    assert_eq!(
        versions(store.list_model_versions("acme", "four-stage", None, 2).await.unwrap()),
        [3, 2]
    );
    assert_eq!(
        versions(
            store
                .list_model_versions("acme", "four-stage", Some(2), 2)
                .await
                .unwrap()
        ),
        [1]
    );
    assert!(
        store
            .list_model_versions("acme", "four-stage", Some(1), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        versions(
            store
                .list_model_versions("globex", "four-stage", None, 10)
                .await
                .unwrap()
        ),
        [1]
    );
}

pub async fn concurrent_publishes_get_distinct_versions(db: TestDb) {
    let mut publishes = Vec::new();
    for revision in 1..=8 {
        let store = db.store.clone();
        publishes.push(tokio::spawn(async move {
            store
                .publish_model(new_model("acme", "four-stage", revision), None)
                .await
        }));
    }
    let mut versions = Vec::new();
    for publish in publishes {
        versions.push(publish.await.unwrap().unwrap().version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    let listed = db
        .store
        .list_model_versions("acme", "four-stage", None, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 8);
}

pub async fn publishing_stores_the_idempotency_key_once(db: TestDb) {
    let store = &db.store;
    let key = idempotency_key("acme", "req-1", t0());
    store
        .publish_model(new_model("acme", "four-stage", 1), Some(key.clone()))
        .await
        .unwrap();
    let stored = store.find_idempotency_key("acme", "req-1").await.unwrap().unwrap();
    assert_eq!(stored.response, key.response);
    assert_eq!(stored.method, key.method);

    let error = store
        .publish_model(new_model("acme", "four-stage", 2), Some(key))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::DuplicateRequest), "{error:?}");
    // The duplicate published nothing.
    let latest = store.get_model("acme", "four-stage", None).await.unwrap().unwrap();
    assert_eq!(latest.version, 1);
    // The same request id is free in another tenant.
    store
        .publish_model(
            new_model("globex", "four-stage", 1),
            Some(idempotency_key("globex", "req-1", t0())),
        )
        .await
        .unwrap();
}

pub async fn a_chosen_version_must_be_the_next(db: TestDb) {
    let store = &db.store;
    let chosen = |version| NewModelVersion {
        version,
        ..new_model("acme", "four-stage", version)
    };
    let first = store.publish_model(chosen(1), None).await.unwrap();
    assert_eq!(first, StoredModel::from(chosen(1)));

    let error = store.publish_model(chosen(1), None).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::AlreadyExists(what) if what.contains("version 1")),
        "{error:?}"
    );
    let error = store.publish_model(chosen(3), None).await.unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    store.publish_model(chosen(2), None).await.unwrap();
    // 0 still means "the next one".
    assert_eq!(
        store
            .publish_model(new_model("acme", "four-stage", 7), None)
            .await
            .unwrap()
            .version,
        3
    );

    // Two publishers choosing the same next version: one wins, the other learns it is taken.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.publish_model(chosen(4), None).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|outcome| matches!(outcome, Err(StoreError::AlreadyExists(_))))
    );
    let versions: Vec<u32> = store
        .list_model_versions("acme", "four-stage", None, 10)
        .await
        .unwrap()
        .iter()
        .map(|model| model.version)
        .collect();
    assert_eq!(versions, [4, 3, 2, 1]);
}
