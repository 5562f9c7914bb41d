//! The Coachflow engine: a pure state machine over a [`coachflow_model::Model`].
//!
//! [`decide`] turns a [`Command`] into the [`Event`]s it causes and the [`Effect`]s (timer
//! changes) the store must perform with them; [`apply`] folds an event into an
//! [`EngagementState`]. Neither does IO nor reads a clock: `now` is an argument, so tests
//! move time by hand and the store replays history exactly.

mod command;
mod decide;
mod error;
mod event;
mod gate;
mod ids;
mod outputs;
mod public;
mod state;
mod visibility;

pub use command::{Action, Actor, Command};
pub use decide::migration::{Conflict, Disposition, Mapping, Migration, conflicts, mapping_problems, migrate};
pub use decide::{Decision, Effect, GateStatus, decide, gate_status};
pub use error::{DomainError, FieldViolation, Reason};
pub use event::{Event, EventKind, SCHEMA_VERSION};
pub use ids::{is_valid_person_id, is_valid_record_id, series_id, task_instance_id};
pub use public::{Audience, EngagementRef, PUBLIC_EVENTS, PublicEvent, public_event, publishable, timestamp};
pub use state::{
    Commitment, CommitmentStatus, ContentErasure, CurrentPhase, EngagementState, EngagementStatus, Goal, GoalStatus,
    MilestoneRecord, Series, SeriesStatus, TaskInstance, TaskStatus, Timer, TimerPurpose, apply,
};
pub use visibility::{CONTENT_ROLES, Viewer};
