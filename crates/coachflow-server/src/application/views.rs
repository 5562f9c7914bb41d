//! What commands and queries return: domain values with what the caller may see of them.
//! The transport layer turns them into replies, showing content only as `viewer` allows.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use coachflow_engine::{EngagementState, Event, Viewer};
use coachflow_model::Model;
use coachflow_store::StoredModel;

use super::names::EngagementName;

/// One engagement as one caller may see it.
#[derive(Debug, Clone)]
pub struct EngagementView {
    pub name: EngagementName,
    pub state: Arc<EngagementState>,
    /// The model version the engagement runs.
    pub model: Arc<Model>,
    pub created_at: DateTime<Utc>,
    pub viewer: Viewer,
    /// The people of the engagement whose data was erased: id → pseudonym (the state shown
    /// names them by pseudonym already).
    pub pseudonyms: std::collections::BTreeMap<String, String>,
}

/// A page of an engagement's history as one caller may see it.
#[derive(Debug, Clone)]
pub struct HistoryView {
    pub name: EngagementName,
    pub events: Vec<Event>,
    /// The sequences of the events whose content was erased.
    pub erased: BTreeSet<u64>,
    /// Whether more events follow the page.
    pub more: bool,
    /// The engagement now: which task each instance is, for the outputs' visibility.
    pub state: Arc<EngagementState>,
    pub model: Arc<Model>,
    pub viewer: Viewer,
}

/// A published model version, with its compiled form.
#[derive(Debug, Clone)]
pub struct ModelView {
    pub stored: StoredModel,
    pub model: Arc<Model>,
}

/// A command's result: the engagement after it, and how many events it appended (0 when
/// it changed nothing or repeated an earlier request).
#[derive(Debug, Clone)]
pub struct Executed {
    pub engagement: EngagementView,
    pub events: usize,
}
