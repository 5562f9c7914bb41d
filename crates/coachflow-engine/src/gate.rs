//! What exit gates and transitions see: the engagement as CEL variables.

use std::collections::{BTreeMap, HashMap};

use coachflow_model::cel::Value;
use coachflow_model::cel::objects::Key;
use coachflow_model::{Model, Needs};

use crate::state::{EngagementState, SeriesStatus, TaskInstance, TaskStatus};

/// Counts over the instances of one task in its latest iteration.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskTally {
    pub(crate) total: i64,
    pub(crate) waiting: i64,
    pub(crate) open: i64,
    pub(crate) completed: i64,
    pub(crate) skipped: i64,
    pub(crate) cancelled: i64,
    pub(crate) overdue: i64,
    /// `Some(finished)` when the task repeats and its series exists.
    pub(crate) series_finished: Option<bool>,
    pub(crate) occurrences: i64,
}

impl TaskTally {
    /// Every instance closed and, for a repeating task, its series over.
    pub(crate) fn done(&self) -> bool {
        self.waiting == 0 && self.open == 0 && self.series_finished.unwrap_or(true)
    }

    fn status(&self, exists: bool) -> &'static str {
        match () {
            _ if !exists => "not_started",
            _ if self.done() => "done",
            _ if self.open > 0 => "open",
            _ => "waiting",
        }
    }
}

/// The tally of `task` in `iteration` (its phase's current one; 1 for `throughout`).
pub(crate) fn tally(state: &EngagementState, task: &str, iteration: u32) -> TaskTally {
    let mut tally = TaskTally::default();
    for instance in state
        .tasks
        .values()
        .filter(|instance| instance.task == task && instance.iteration == iteration)
    {
        count(&mut tally, instance);
    }
    if let Some(series) = state.series_of(task, iteration) {
        tally.series_finished = Some(matches!(
            series.status,
            SeriesStatus::Finished | SeriesStatus::Cancelled
        ));
        tally.occurrences = i64::from(series.occurrences);
    }
    tally
}

fn count(tally: &mut TaskTally, instance: &TaskInstance) {
    tally.total += 1;
    match instance.status {
        TaskStatus::Waiting | TaskStatus::Scheduled => tally.waiting += 1,
        TaskStatus::Open => tally.open += 1,
        TaskStatus::Completed => tally.completed += 1,
        TaskStatus::Skipped => tally.skipped += 1,
        TaskStatus::Cancelled => tally.cancelled += 1,
    }
    if instance.overdue && instance.status == TaskStatus::Open {
        tally.overdue += 1;
    }
}

/// Builds the variables of [`coachflow_model::VARIABLES`] for the current state.
/// The variables `needs` names (only the entries of `tasks` and `outputs` it names).
pub(crate) fn variables(
    model: &Model,
    state: &EngagementState,
    tasks_done: bool,
    approved: bool,
    needs: &Needs,
) -> BTreeMap<&'static str, Value> {
    let mut variables = BTreeMap::new();
    if needs.variable("tasks") || needs.variable("outputs") {
        let (tasks, outputs) = task_variables(model, state, needs);
        if needs.variable("tasks") {
            variables.insert("tasks", map_value(tasks));
        }
        if needs.variable("outputs") {
            variables.insert("outputs", map_value(outputs));
        }
    }
    if needs.variable("goals") {
        let goals: Vec<Value> = state
            .goals
            .values()
            .map(|goal| {
                let mut fields: HashMap<Key, Value> = HashMap::new();
                fields.insert(key_of("id"), Value::from(goal.id.as_str()));
                fields.insert(key_of("status"), Value::from(goal.status.as_str()));
                fields.insert(key_of("progress"), Value::Int(i64::from(goal.progress)));
                map_value(fields)
            })
            .collect();
        variables.insert("goals", Value::from(goals));
    }
    if needs.variable("commitments") {
        let commitments: Vec<Value> = state
            .commitments
            .values()
            .map(|commitment| {
                let mut fields: HashMap<Key, Value> = HashMap::new();
                fields.insert(key_of("id"), Value::from(commitment.id.as_str()));
                fields.insert(key_of("status"), Value::from(commitment.status.as_str()));
                map_value(fields)
            })
            .collect();
        variables.insert("commitments", Value::from(commitments));
    }
    if needs.variable("people") {
        let mut people = HashMap::new();
        for role in model.roles() {
            let bound = state.people.get(&role.key).map_or(0, Vec::len);
            people.insert(key_of(&role.key), Value::Int(i64::try_from(bound).unwrap_or(i64::MAX)));
        }
        variables.insert("people", map_value(people));
    }
    if needs.variable("phase") {
        let mut phase = HashMap::new();
        if let Some(current) = &state.phase {
            phase.insert(key_of("key"), Value::from(current.key.as_str()));
            phase.insert(key_of("iteration"), Value::Int(i64::from(current.iteration)));
        }
        phase.insert(key_of("tasks_done"), Value::Bool(tasks_done));
        phase.insert(key_of("approved"), Value::Bool(approved));
        variables.insert("phase", map_value(phase));
    }
    variables
}

/// `tasks` and `outputs`: of the latest iteration of each task the model has (that
/// `needs` names).
fn task_variables(model: &Model, state: &EngagementState, needs: &Needs) -> (HashMap<Key, Value>, HashMap<Key, Value>) {
    // The latest iteration each task has instances or a series in.
    let mut latest: HashMap<&str, u32> = HashMap::new();
    for instance in state.tasks.values() {
        let entry = latest.entry(instance.task.as_str()).or_insert(instance.iteration);
        *entry = (*entry).max(instance.iteration);
    }
    for series in state.series.values() {
        let entry = latest.entry(series.task.as_str()).or_insert(series.iteration);
        *entry = (*entry).max(series.iteration);
    }
    let mut tallies: HashMap<&str, TaskTally> = HashMap::new();
    for instance in state.tasks.values() {
        if latest.get(instance.task.as_str()) == Some(&instance.iteration) {
            count(tallies.entry(instance.task.as_str()).or_default(), instance);
        }
    }
    for series in state.series.values() {
        if latest.get(series.task.as_str()) == Some(&series.iteration) {
            let tally = tallies.entry(series.task.as_str()).or_default();
            tally.series_finished = Some(matches!(
                series.status,
                SeriesStatus::Finished | SeriesStatus::Cancelled
            ));
            tally.occurrences = i64::from(series.occurrences);
        }
    }
    // The outputs of the most recently completed instance of each task.
    let mut last_completed: HashMap<&str, &TaskInstance> = HashMap::new();
    for instance in state
        .tasks
        .values()
        .filter(|instance| instance.status == TaskStatus::Completed)
    {
        let entry = last_completed.entry(instance.task.as_str()).or_insert(instance);
        if (instance.closed_at, instance.sequence_key()) > (entry.closed_at, entry.sequence_key()) {
            *entry = instance;
        }
    }

    let mut tasks = HashMap::new();
    let mut outputs = HashMap::new();
    for (index, plan) in model.tasks().iter().enumerate() {
        let key = plan.key.as_str();
        let wants_task = needs.entry("tasks", key);
        let wants_outputs = needs.entry("outputs", key);
        if !wants_task && !wants_outputs {
            continue;
        }
        let tally = tallies.get(key).copied().unwrap_or_default();
        let exists = latest.contains_key(key);
        let mut fields: HashMap<Key, Value> = HashMap::new();
        fields.insert(key_of("status"), Value::from(tally.status(exists)));
        fields.insert(key_of("done"), Value::Bool(exists && tally.done()));
        fields.insert(key_of("total"), Value::Int(tally.total));
        fields.insert(key_of("open"), Value::Int(tally.open));
        fields.insert(key_of("completed"), Value::Int(tally.completed));
        fields.insert(key_of("skipped"), Value::Int(tally.skipped));
        fields.insert(key_of("cancelled"), Value::Int(tally.cancelled));
        fields.insert(key_of("overdue"), Value::Int(tally.overdue));
        fields.insert(key_of("occurrences"), Value::Int(tally.occurrences));
        if wants_task {
            tasks.insert(key_of(key), map_value(fields));
        }
        if !wants_outputs {
            continue;
        }

        let declared = &model.task_spec(coachflow_model::TaskId(index)).outputs;
        let recorded = last_completed.get(key).map(|instance| &instance.outputs);
        let mut values: HashMap<Key, Value> = HashMap::new();
        for output in declared {
            let value = recorded
                .and_then(|recorded| recorded.get(&output.key))
                .map_or(Value::Null, json_to_cel);
            values.insert(key_of(&output.key), value);
        }
        outputs.insert(key_of(key), map_value(values));
    }

    (tasks, outputs)
}

impl TaskInstance {
    /// Orders instances of one task created in the same instant.
    fn sequence_key(&self) -> (u32, u32) {
        (self.iteration, self.occurrence.unwrap_or(0))
    }
}

fn key_of(text: &str) -> Key {
    Key::from(text)
}

fn map_value(fields: HashMap<Key, Value>) -> Value {
    Value::from(fields)
}

/// A stored output value as CEL sees it: integers stay integers so `score >= 4` works.
fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(integer) => Value::Int(integer),
            None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(json_to_cel).collect::<Vec<_>>()),
        serde_json::Value::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(key, value)| (key_of(key), json_to_cel(value)))
                .collect();
            map_value(map)
        }
    }
}
