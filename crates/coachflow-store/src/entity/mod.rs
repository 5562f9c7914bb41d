//! sea-orm entities, one per table; the schema itself is defined by `coachflow-migration`.

pub mod content_kek;
pub mod content_key;
pub mod content_read;
pub mod engagement;
pub mod engagement_person;
pub mod engagement_task;
pub mod erased_person;
pub mod event;
pub mod idempotency_key;
pub mod model_version;
pub mod operation;
pub mod operation_item;
pub mod outbox;
pub mod outbox_claim;
pub mod snapshot;
pub mod timer;
