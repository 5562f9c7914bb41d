//! Reading an engagement's history (`GetHistory`): gapless sequences, the timers it
//! scheduled and fired, and the public events it implies.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use coachflow_server::proto::HistoryEvent;

/// A string field of an event's details.
pub fn detail<'a>(event: &'a HistoryEvent, field: &str) -> Option<&'a str> {
    let value = event.details.as_ref()?.fields.get(field)?;
    match value.kind.as_ref()? {
        prost_types::value::Kind::StringValue(text) => Some(text),
        _ => None,
    }
}

/// Panics unless the sequences run 1, 2, 3, ... without a gap or a repeat.
pub fn assert_gapless(name: &str, history: &[HistoryEvent]) {
    for (index, event) in history.iter().enumerate() {
        assert_eq!(
            event.sequence,
            index as u64 + 1,
            "{name}: history is not gapless at position {index}: {:?}",
            history.iter().map(|event| event.sequence).collect::<Vec<_>>()
        );
    }
}

/// The types of the events, in order.
pub fn types(history: &[HistoryEvent]) -> Vec<&str> {
    history.iter().map(|event| event.r#type.as_str()).collect()
}

/// How many events of `event_type` the history holds.
pub fn count(history: &[HistoryEvent], event_type: &str) -> usize {
    history.iter().filter(|event| event.r#type == event_type).count()
}

/// The events of `event_type` whose `id` detail is `id`.
pub fn with_id<'a>(history: &'a [HistoryEvent], event_type: &str, id: &str) -> Vec<&'a HistoryEvent> {
    history
        .iter()
        .filter(|event| event.r#type == event_type && detail(event, "id") == Some(id))
        .collect()
}

/// What the history says about its timers.
#[derive(Debug, Default)]
pub struct Timers {
    /// Scheduled and neither fired, cancelled nor deferred yet, by id: when they fire.
    pub pending: BTreeMap<String, DateTime<Utc>>,
    /// Fired, by id: how often.
    pub fired: BTreeMap<String, usize>,
    /// `timer_fired` events for a timer that was not pending at the time: a timer fired
    /// twice, or one never scheduled.
    pub unexpected_fires: Vec<(u64, String)>,
}

/// Replays the timer events of a history.
pub fn timers(history: &[HistoryEvent]) -> Timers {
    let mut timers = Timers::default();
    for event in history {
        let Some(id) = detail(event, "id") else { continue };
        match event.r#type.as_str() {
            "timer_scheduled" => {
                let fires_at = detail(event, "fires_at")
                    .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                    .unwrap_or_else(|| panic!("timer_scheduled without a fires_at time: {event:?}"));
                timers.pending.insert(id.to_owned(), fires_at.with_timezone(&Utc));
            }
            "timer_fired" => {
                if timers.pending.remove(id).is_none() {
                    timers.unexpected_fires.push((event.sequence, id.to_owned()));
                }
                *timers.fired.entry(id.to_owned()).or_default() += 1;
            }
            "timer_cancelled" | "timer_deferred" => {
                timers.pending.remove(id);
            }
            _ => {}
        }
    }
    timers
}

/// The CloudEvents type of a history event that is public, e.g. `task_due_soon` →
/// `dev.coachflow.task.due_soon.v1`; `None` for an internal one.
pub fn public_type(event_type: &str) -> Option<String> {
    const PUBLIC: &[(&str, &str)] = &[
        ("engagement_started", "engagement.started"),
        ("engagement_suspended", "engagement.suspended"),
        ("engagement_resumed", "engagement.resumed"),
        ("engagement_completed", "engagement.completed"),
        ("engagement_cancelled", "engagement.cancelled"),
        ("phase_entered", "phase.entered"),
        ("phase_completed", "phase.completed"),
        ("task_opened", "task.opened"),
        ("task_completed", "task.completed"),
        ("task_skipped", "task.skipped"),
        ("task_due_soon", "task.due_soon"),
        ("task_overdue", "task.overdue"),
        ("task_escalated", "task.escalated"),
        ("milestone_reached", "milestone.reached"),
        ("goal_set", "goal.set"),
        ("goal_achieved", "goal.achieved"),
    ];
    PUBLIC
        .iter()
        .find(|(internal, _)| *internal == event_type)
        .map(|(_, public)| format!("dev.coachflow.{public}.v1"))
}

/// `(sequence, CloudEvents type)` of every public event of a history, in order.
pub fn public_events(history: &[HistoryEvent]) -> Vec<(u64, String)> {
    history
        .iter()
        .filter_map(|event| public_type(&event.r#type).map(|public| (event.sequence, public)))
        .collect()
}
