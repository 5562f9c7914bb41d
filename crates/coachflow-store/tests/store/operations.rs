//! Long-running operations: one replica holds an operation under a lease; when the lease
//! runs out another claims it and goes on with what is pending, and the first may no longer
//! record anything.

use std::time::Duration as StdDuration;

use coachflow_store::{NewOperation, OperationItem, OperationStatus, StoreError};

use crate::support::{TestDb, idempotency_key, t0};

const LEASE: StdDuration = StdDuration::from_secs(30);

fn operation(id: &str, engagements: usize) -> NewOperation {
    NewOperation {
        tenant: "acme".to_owned(),
        id: id.to_owned(),
        kind: "migrate_engagements".to_owned(),
        request: "{}".to_owned(),
        principal: "{}".to_owned(),
        engagements: (0..engagements).map(|n| format!("e-{n:04}")).collect(),
        created_at: t0(),
    }
}

fn done(engagement: &str, outcome: &str) -> OperationItem {
    OperationItem {
        engagement: engagement.to_owned(),
        outcome: outcome.to_owned(),
        detail: None,
    }
}

pub async fn an_operation_is_worked_under_a_lease_and_taken_over_when_it_ends(db: TestDb) {
    let store = &db.store;
    // More items than one insert statement takes.
    store.create_operation(operation("op-1", 1_200), None).await.unwrap();
    let created = store.get_operation("acme", "op-1").await.unwrap().unwrap();
    assert_eq!(
        (created.status, created.total(), created.count("pending")),
        (OperationStatus::Running, 1_200, 1_200)
    );

    let claimed = store.claim_operation("replica-a", t0(), LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.id, "op-1");
    assert!(
        store.claim_operation("replica-b", t0(), LEASE).await.unwrap().is_none(),
        "claimed twice"
    );

    let batch = store.pending_operation_items("acme", "op-1", 2).await.unwrap();
    assert_eq!(batch, ["e-0000", "e-0001"]);
    let items = [done("e-0000", "migrated"), done("e-0001", "already_migrated")];
    let renewed = store
        .record_operation_items("acme", "op-1", "replica-a", &items, t0(), LEASE)
        .await
        .unwrap();
    assert_eq!(renewed, Some(false));

    // replica-a stops renewing; past the lease, replica-b takes over from what is pending.
    let later = t0() + chrono::Duration::seconds(31);
    let taken = store.claim_operation("replica-b", later, LEASE).await.unwrap().unwrap();
    assert_eq!(taken.count("migrated") + taken.count("already_migrated"), 2);
    assert_eq!(
        store.pending_operation_items("acme", "op-1", 1).await.unwrap(),
        ["e-0002"]
    );
    let refused = store
        .record_operation_items("acme", "op-1", "replica-a", &[done("e-0002", "migrated")], later, LEASE)
        .await
        .unwrap();
    assert_eq!(refused, None, "a replica whose lease ran out recorded an outcome");
    assert!(
        !store
            .finish_operation("acme", "op-1", "replica-a", OperationStatus::Succeeded, None, later)
            .await
            .unwrap()
    );

    // Cancelled: the holder hears it with its next batch, and finishes it so.
    assert!(store.request_operation_cancel("acme", "op-1", later).await.unwrap());
    let heard = store
        .record_operation_items("acme", "op-1", "replica-b", &[done("e-0002", "migrated")], later, LEASE)
        .await
        .unwrap();
    assert_eq!(heard, Some(true));
    assert!(
        store
            .finish_operation("acme", "op-1", "replica-b", OperationStatus::Cancelled, None, later)
            .await
            .unwrap()
    );
    let finished = store.get_operation("acme", "op-1").await.unwrap().unwrap();
    assert_eq!(
        (finished.status, finished.count("pending")),
        (OperationStatus::Cancelled, 1_197)
    );
    assert_eq!(finished.done_at, Some(later));
    assert!(
        store
            .claim_operation("replica-c", later, LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.request_operation_cancel("acme", "op-1", later).await.unwrap());

    // Listed newest first; deleted with its items.
    store.create_operation(operation("op-2", 1), None).await.unwrap();
    let listed = store.list_operations("acme", None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|op| op.id.as_str()).collect::<Vec<_>>(),
        ["op-2", "op-1"]
    );
    assert!(
        !store.delete_operation("acme", "op-2").await.unwrap(),
        "a running operation was deleted"
    );
    assert!(store.delete_operation("acme", "op-1").await.unwrap());
    assert!(store.get_operation("acme", "op-1").await.unwrap().is_none());
    assert!(store.operation_items("acme", "op-1").await.unwrap().is_empty());
}

pub async fn an_operation_and_its_request_id_are_stored_together(db: TestDb) {
    let store = &db.store;
    let key = idempotency_key("acme", "bulk-1", t0());
    store
        .create_operation(operation("op-1", 3), Some(key.clone()))
        .await
        .unwrap();
    let twin = store.create_operation(operation("op-2", 3), Some(key)).await;
    assert!(matches!(twin, Err(StoreError::DuplicateRequest)), "{twin:?}");
    assert!(
        store.get_operation("acme", "op-2").await.unwrap().is_none(),
        "the twin left an operation"
    );
    assert!(store.operation_items("acme", "op-2").await.unwrap().is_empty());
    let taken = store.create_operation(operation("op-1", 1), None).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "{taken:?}");
}
