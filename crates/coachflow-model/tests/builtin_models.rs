//! The built-in process models under `models/` at the repository root: each one validates,
//! there are exactly the three coaching methods, and each says what its method says (the
//! loops, per-stakeholder feedback, sign-offs, schedules and follow-ups a reader relies on).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use coachflow_model::cel::Value;
use coachflow_model::{Condition, IsoDuration, Model, Phase, Task};
use serde_json::json;

const BUILTIN_KEYS: [&str; 3] = ["columbia-three-phase", "four-stage", "seven-step"];

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Every `*.yaml` file of the models folder, sorted.
fn model_files() -> Vec<PathBuf> {
    let directory = models_dir();
    let entries =
        std::fs::read_dir(&directory).unwrap_or_else(|error| panic!("cannot read {}: {error}", directory.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display())))
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    files.sort();
    files
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every model file compiled, or every problem of every file that did not.
fn compile_all() -> Result<Vec<(PathBuf, Model)>, String> {
    let mut models = Vec::new();
    let mut failures = Vec::new();
    for path in model_files() {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        match Model::from_text(&text) {
            Ok(model) => models.push((path, model)),
            Err(problems) => {
                let listed: Vec<String> = problems.0.iter().map(|problem| format!("  {problem}")).collect();
                failures.push(format!("{}:\n{}", path.display(), listed.join("\n")));
            }
        }
    }
    if failures.is_empty() {
        Ok(models)
    } else {
        Err(failures.join("\n"))
    }
}

/// The built-in model with `key` (its file is `models/<key>.yaml`).
fn builtin(key: &str) -> Model {
    let path = models_dir().join(format!("{key}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    Model::from_text(&text).unwrap_or_else(|problems| panic!("{}: {problems}", path.display()))
}

fn phase_keys(model: &Model) -> Vec<&str> {
    model
        .document()
        .spec
        .phases
        .iter()
        .map(|phase| phase.key.as_str())
        .collect()
}

fn phase<'m>(model: &'m Model, key: &str) -> &'m Phase {
    model
        .document()
        .spec
        .phases
        .iter()
        .find(|phase| phase.key == key)
        .unwrap_or_else(|| panic!("{} has no phase '{key}'", model.key()))
}

fn task<'m>(model: &'m Model, key: &str) -> &'m Task {
    let id = model
        .task_id(key)
        .unwrap_or_else(|| panic!("{} has no task '{key}'", model.key()));
    model.task_spec(id)
}

/// Every task of the model: the phases' tasks, then `throughout`.
fn all_tasks(model: &Model) -> impl Iterator<Item = &Task> {
    let spec = &model.document().spec;
    spec.phases
        .iter()
        .flat_map(|phase| phase.tasks.iter())
        .chain(spec.throughout.iter())
}

fn exit_when<'m>(model: &'m Model, phase_key: &str) -> &'m str {
    phase(model, phase_key)
        .exit
        .as_ref()
        .and_then(|exit| exit.when.as_deref())
        .unwrap_or_else(|| panic!("phase '{phase_key}' of {} has no exit.when", model.key()))
}

fn compiled_exit_gate<'m>(model: &'m Model, phase_key: &str) -> &'m Condition {
    let index = model
        .phase_index(phase_key)
        .unwrap_or_else(|| panic!("{} has no phase '{phase_key}'", model.key()));
    model
        .phase(index)
        .exit_when
        .as_ref()
        .unwrap_or_else(|| panic!("phase '{phase_key}' of {} has no exit.when", model.key()))
}

fn weeks(duration: &str) -> f64 {
    let duration: IsoDuration = duration
        .parse()
        .unwrap_or_else(|error| panic!("'{duration}' is not a duration: {error}"));
    duration.approximate_seconds() as f64 / (7.0 * 86_400.0)
}

/// CEL variables of an engagement, each given as JSON; the rest are empty.
fn variables(given: serde_json::Value) -> BTreeMap<&'static str, Value> {
    let mut variables = BTreeMap::new();
    for name in coachflow_model::VARIABLES {
        let value = given.get(name).cloned().unwrap_or_else(|| match name {
            "goals" | "commitments" => json!([]),
            _ => json!({}),
        });
        let value = coachflow_model::cel::to_value(value)
            .unwrap_or_else(|error| panic!("cannot turn {name} into a CEL value: {error}"));
        variables.insert(name, value);
    }
    variables
}

fn holds(condition: &Condition, given: serde_json::Value) -> bool {
    condition
        .evaluate(variables(given))
        .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn every_builtin_model_validates() {
    if let Err(problems) = compile_all() {
        panic!("built-in models with problems:\n{problems}");
    }
}

#[test]
fn the_builtin_models_are_exactly_the_three_methods() {
    let models = compile_all().unwrap_or_else(|problems| panic!("{problems}"));
    let keys: Vec<&str> = models.iter().map(|(_, model)| model.key()).collect();
    assert_eq!(keys, BUILTIN_KEYS, "models in {}", models_dir().display());
    for (path, model) in &models {
        assert_eq!(
            file_stem(path),
            model.key(),
            "{} is named after its key",
            path.display()
        );
    }
}

#[test]
fn every_model_binds_client_coach_sponsor_hr_and_stakeholders() {
    for key in BUILTIN_KEYS {
        let model = builtin(key);
        let role = |name: &str| model.role(name).unwrap_or_else(|| panic!("{key} has no role '{name}'"));
        assert!(role("client").required, "{key}: client is required");
        assert!(role("coach").required, "{key}: coach is required");
        assert!(!role("sponsor").multiple && !role("hr").multiple, "{key}");
        assert!(role("stakeholder").multiple, "{key}: stakeholders are many");
    }
}

#[test]
fn every_declared_milestone_is_reached_somewhere() {
    for key in BUILTIN_KEYS {
        let model = builtin(key);
        let spec = &model.document().spec;
        let reached: BTreeSet<&str> = all_tasks(&model)
            .filter_map(|task| task.milestone.as_deref())
            .chain(
                spec.phases
                    .iter()
                    .filter_map(|phase| phase.exit.as_ref()?.milestone.as_deref()),
            )
            .collect();
        for milestone in &spec.milestones {
            assert!(
                reached.contains(milestone.key.as_str()),
                "{key}: milestone '{}' is declared but no task or exit reaches it",
                milestone.key
            );
        }
    }
}

#[test]
fn series_inside_phases_end_and_only_throughout_series_run_open_ended() {
    for key in BUILTIN_KEYS {
        let model = builtin(key);
        for phase in &model.document().spec.phases {
            for task in &phase.tasks {
                if let Some(repeat) = &task.repeat {
                    assert!(
                        repeat.count.is_some() || repeat.until.is_some(),
                        "{key}: '{}' in phase '{}' repeats without end",
                        task.key,
                        phase.key
                    );
                }
            }
        }
    }
}

#[test]
fn notes_and_reflections_stay_between_coach_and_client() {
    for key in BUILTIN_KEYS {
        let model = builtin(key);
        for task in all_tasks(&model) {
            for output in &task.outputs {
                let personal = output.key.contains("notes") || output.key.starts_with("reflection");
                if !personal {
                    continue;
                }
                assert_eq!(
                    output.output_type,
                    coachflow_model::OutputType::Text,
                    "{key}: {}.{}",
                    task.key,
                    output.key
                );
                assert!(
                    !output.visibility.is_empty()
                        && output.visibility.iter().all(|role| role == "coach" || role == "client"),
                    "{key}: {}.{} is visible to {:?}",
                    task.key,
                    output.key,
                    output.visibility
                );
            }
            if task.for_each.as_deref() == Some("stakeholder") {
                for output in task.outputs.iter().filter(|output| output.key == "comments") {
                    assert_eq!(
                        output.visibility,
                        ["coach"],
                        "{key}: verbatim feedback of '{}'",
                        task.key
                    );
                }
            }
        }
    }
}

#[test]
fn columbia_runs_context_content_conduct() {
    let model = builtin("columbia-three-phase");
    assert_eq!(phase_keys(&model), ["context", "content", "conduct"]);

    // Context: the worldviews of the client and the team, in the organizational system.
    for key in ["client-worldviews", "team-worldviews", "organizational-system"] {
        assert!(
            phase(&model, "context").tasks.iter().any(|task| task.key == key),
            "{key}"
        );
    }
    let organizational = task(&model, "organizational-system");
    assert!(organizational.after.contains(&"client-worldviews".to_owned()));
    assert!(organizational.after.contains(&"team-worldviews".to_owned()));

    // Content: 360 reviews from every stakeholder, then SMART goals gate the phase.
    let reviews = task(&model, "feedback-360");
    assert_eq!(reviews.for_each.as_deref(), Some("stakeholder"));
    assert_eq!(reviews.assignee.as_deref(), Some("stakeholder"));
    assert!(
        phase(&model, "content")
            .tasks
            .iter()
            .any(|task| task.key == "feedback-360")
    );
    for key in ["action-options", "priorities-and-goals", "critical-success-factors"] {
        assert!(
            phase(&model, "content").tasks.iter().any(|task| task.key == key),
            "{key}"
        );
    }
    assert!(exit_when(&model, "content").contains("goals.size() >= 1"));
    let goals_gate = compiled_exit_gate(&model, "content");
    assert!(!holds(goals_gate, json!({"phase": {"tasks_done": true}, "goals": []})));
    assert!(holds(
        goals_gate,
        json!({"phase": {"tasks_done": true}, "goals": [{"id": "g1", "status": "active", "progress": 0}]})
    ));

    // Conduct: a bounded series of sessions, self-appraisal, and no commitment left open.
    let sessions = task(&model, "conduct-sessions");
    assert!(sessions.repeat.as_ref().is_some_and(|repeat| repeat.count.is_some()));
    assert!(task(&model, "self-appraisal").repeat.is_some());
    let commitments_gate = compiled_exit_gate(&model, "conduct");
    let done = |statuses: &[&str]| {
        let commitments: Vec<_> = statuses
            .iter()
            .enumerate()
            .map(|(index, status)| json!({"id": format!("c{index}"), "status": status}))
            .collect();
        holds(
            commitments_gate,
            json!({"phase": {"tasks_done": true}, "commitments": commitments}),
        )
    };
    assert!(!done(&["kept", "open"]));
    assert!(done(&["kept", "missed", "renegotiated", "dropped"]));
}

#[test]
fn four_stage_runs_awareness_analysis_action_achievement() {
    let model = builtin("four-stage");
    assert_eq!(phase_keys(&model), ["awareness", "analysis", "action", "achievement"]);

    // Awareness: the kick-off brings in the executive team, and the client must commit.
    let kickoff = task(&model, "kickoff-meeting");
    for role in ["client", "sponsor", "hr"] {
        assert!(
            kickoff.participants.iter().any(|participant| participant == role),
            "{role}"
        );
    }
    assert!(exit_when(&model, "awareness").contains("outputs['client-commitment'].committed"));

    // Analysis: stakeholder interviews per stakeholder; the IDP is signed off by sponsor and
    // HR; goals exist before the phase ends.
    let analysis = phase(&model, "analysis");
    assert!(
        analysis
            .tasks
            .iter()
            .any(|task| task.for_each.as_deref() == Some("stakeholder")),
        "a per-stakeholder task in analysis"
    );
    let analysis_exit = analysis.exit.as_ref().unwrap_or_else(|| panic!("analysis has an exit"));
    assert_eq!(analysis_exit.approval, ["sponsor", "hr"]);
    assert!(exit_when(&model, "analysis").contains("goals.size() >= 1"));
    let plan = task(&model, "development-plan");
    assert!(plan.participants.contains(&"sponsor".to_owned()) && plan.participants.contains(&"hr".to_owned()));
    assert!(analysis.tasks.iter().any(|task| task.key == "coaching-call-schedule"));

    // Action: coaching calls on a schedule that ends; most of the seed's actions are optional.
    let calls = task(&model, "coaching-calls");
    assert!(
        phase(&model, "action")
            .tasks
            .iter()
            .any(|task| task.key == "coaching-calls")
    );
    let repeat = calls.repeat.as_ref().unwrap_or_else(|| panic!("coaching calls repeat"));
    assert!(repeat.every.is_some() || repeat.cron.is_some());
    assert!(repeat.count.is_some() || repeat.until.is_some());
    let optional = phase(&model, "action")
        .tasks
        .iter()
        .filter(|task| task.optional)
        .count();
    assert!(optional >= 4, "{optional} optional actions");

    // Achievement: surveys per stakeholder, and a follow-up at least four weeks after the
    // last phase-down session.
    let achievement = phase(&model, "achievement");
    assert_eq!(
        task(&model, "stakeholder-survey").for_each.as_deref(),
        Some("stakeholder")
    );
    assert!(achievement.tasks.iter().any(|task| task.key == "stakeholder-survey"));
    let last = model.document().spec.phases.last().unwrap_or_else(|| panic!("phases"));
    assert_eq!(last.key, "achievement");
    let follow_up = last
        .tasks
        .iter()
        .filter(|task| task.start_after.as_deref().is_some_and(|delay| weeks(delay) >= 4.0))
        .collect::<Vec<_>>();
    assert_eq!(follow_up.len(), 1, "one delayed follow-up in the last phase");
    assert_eq!(follow_up[0].key, "follow-up-session");
    assert!(follow_up[0].after.contains(&"phase-down".to_owned()));
    assert!(follow_up[0].outputs.iter().any(|output| output.key == "final_report"));
    assert!(task(&model, "phase-down").repeat.is_some());
    assert!(
        task(&model, "course-corrections")
            .outputs
            .iter()
            .any(|output| output.key == "corrections")
    );
}

#[test]
fn four_stage_loops_from_achievement_back_to_action_at_most_twice() {
    let model = builtin("four-stage");
    let achievement = phase(&model, "achievement");
    let loop_back = achievement
        .next
        .iter()
        .find(|transition| transition.to == "action")
        .unwrap_or_else(|| panic!("achievement has a transition to action"));
    assert!(loop_back.when.is_some(), "the loop is conditional");

    let index = model
        .phase_index("achievement")
        .unwrap_or_else(|| panic!("achievement"));
    let transition = model.phase(index).transitions[0]
        .when
        .as_ref()
        .unwrap_or_else(|| panic!("the loop has a when"));
    let review = |course_correction: bool, iteration: u32| {
        json!({
            "outputs": {"survey-review": {"course_correction": course_correction}},
            "phase": {"key": "achievement", "iteration": iteration, "tasks_done": true, "approved": true},
        })
    };
    assert!(holds(transition, review(true, 1)));
    assert!(holds(transition, review(true, 2)));
    assert!(!holds(transition, review(true, 3)), "a third correction does not loop");
    assert!(!holds(transition, review(false, 1)));

    // The gate leaves early once the corrections are documented, but on re-entry the
    // previous iteration's review output alone does not end the phase.
    let gate = compiled_exit_gate(&model, "achievement");
    let state = |review_done: bool, corrections_done: bool, iteration: u32| {
        json!({
            "tasks": {
                "survey-review": {"done": review_done},
                "course-corrections": {"done": corrections_done},
            },
            "outputs": {"survey-review": {"course_correction": true}},
            "phase": {"key": "achievement", "iteration": iteration, "tasks_done": false, "approved": true},
        })
    };
    assert!(holds(gate, state(true, true, 1)));
    assert!(
        !holds(gate, state(true, false, 1)),
        "corrections must be documented first"
    );
    assert!(
        !holds(gate, state(false, false, 2)),
        "a stale review does not end the phase"
    );
    assert!(
        !holds(gate, state(true, true, 3)),
        "the third time round, the stage runs to the end"
    );
}

#[test]
fn seven_step_has_six_phases_and_continuous_feedback_throughout() {
    let model = builtin("seven-step");
    assert_eq!(
        phase_keys(&model),
        [
            "relationship",
            "assessment",
            "goal-setting",
            "coaching",
            "closure",
            "sustainment"
        ]
    );

    // Step 1: contracting, with the confidentiality terms, signed off by client and sponsor.
    let contracting = task(&model, "contracting");
    assert!(
        phase(&model, "relationship")
            .tasks
            .iter()
            .any(|task| task.key == "contracting")
    );
    assert!(
        contracting
            .outputs
            .iter()
            .any(|output| output.key.contains("confidentiality") && output.required)
    );
    let relationship_exit = phase(&model, "relationship")
        .exit
        .as_ref()
        .unwrap_or_else(|| panic!("relationship has an exit"));
    assert_eq!(relationship_exit.approval, ["client", "sponsor"]);

    // Step 2: 360-degree feedback from every stakeholder.
    assert_eq!(task(&model, "feedback-360").for_each.as_deref(), Some("stakeholder"));

    // Step 3: SMART goals with measurable milestones gate the phase.
    for key in [
        "specific-objectives",
        "measurable-milestones",
        "realistic-expectations",
        "timelines",
        "resources",
    ] {
        assert!(
            phase(&model, "goal-setting").tasks.iter().any(|task| task.key == key),
            "{key}"
        );
    }
    assert!(exit_when(&model, "goal-setting").contains("goals.size() >= 1"));

    // Step 4: a bounded series of sessions; accountability means no commitment left open.
    let sessions = task(&model, "coaching-sessions");
    assert!(sessions.repeat.as_ref().is_some_and(|repeat| repeat.count.is_some()));
    assert!(exit_when(&model, "coaching").contains("commitments.all("));

    // Step 5: check-ins and progress reviews throughout, each a repeating series.
    let throughout: Vec<&Task> = model.document().spec.throughout.iter().collect();
    assert!(throughout.len() >= 2);
    assert!(throughout.iter().all(|task| task.repeat.is_some()));
    assert_eq!(model.throughout().count(), throughout.len());
    assert!(
        throughout
            .iter()
            .any(|task| task.kind == coachflow_model::TaskKind::Checkin)
    );
    assert!(
        throughout
            .iter()
            .any(|task| task.outputs.iter().any(|output| output.key == "objectives_adjusted"))
    );

    // Step 7: periodic check-ins after the engagement, a while after closure.
    let checkins = task(&model, "sustainment-checkins");
    assert!(
        phase(&model, "sustainment")
            .tasks
            .iter()
            .any(|task| task.key == "sustainment-checkins")
    );
    assert!(checkins.repeat.as_ref().is_some_and(|repeat| repeat.count.is_some()));
    assert!(checkins.start_after.as_deref().is_some_and(|delay| weeks(delay) >= 4.0));
}
