//! CEL conditions of exit gates and transitions: compiling them, checking what they name
//! against the model, and evaluating them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::{Context, Program, Value};

/// The variables a condition can use, and what each holds.
pub const VARIABLES: [&str; 6] = ["tasks", "outputs", "goals", "commitments", "people", "phase"];

/// Fields of `tasks.<key>`.
pub const TASK_FIELDS: [&str; 9] = [
    "status",
    "done",
    "total",
    "open",
    "completed",
    "skipped",
    "cancelled",
    "overdue",
    "occurrences",
];

/// Fields of `phase`.
pub const PHASE_FIELDS: [&str; 4] = ["key", "iteration", "tasks_done", "approved"];

/// What a condition may refer to, drawn from the model being validated.
pub trait Vocabulary {
    /// Every task key of the model.
    fn task_keys(&self) -> Vec<&str>;
    /// The output keys of `task`; `None` when the task does not exist.
    fn output_keys(&self, task: &str) -> Option<Vec<&str>>;
    /// Every role key of the model.
    fn role_keys(&self) -> Vec<&str>;
}

thread_local! {
    /// The standard CEL functions, registered once per thread: building a context costs
    /// more than evaluating a typical gate.
    static ROOT_CONTEXT: Context<'static, 'static> = Context::default();
}

/// A compiled CEL condition. Cheap to clone; shared by every engagement of a model.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    uses_tasks_done: bool,
    needs: Arc<Needs>,
    /// `(task, output)` of every `outputs.<task>.<output>` the condition reads.
    output_reads: Arc<Vec<(String, String)>>,
}

/// Which variables a condition reads, and of `tasks` and `outputs` which entries: binding
/// only those keeps an evaluation cheap (a model's every task and output, converted for
/// CEL, costs far more than the few a gate names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Per variable: the keys read through constant selections or indexes
    /// (`outputs['review'].score` reads `review`), or `None` when the variable is used
    /// as a whole (iterated, indexed by a computed key).
    variables: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl Needs {
    fn from_accesses(accesses: &[(&str, Vec<&str>)]) -> Needs {
        let mut variables: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for (root, keys) in accesses {
            let entry = variables
                .entry((*root).to_owned())
                .or_insert_with(|| Some(BTreeSet::new()));
            match (entry, keys.first()) {
                (Some(keys), Some(first)) => {
                    keys.insert((*first).to_owned());
                }
                (entry, None) => *entry = None,
                (None, Some(_)) => {}
            }
        }
        Needs { variables }
    }

    /// Every variable, whole.
    pub fn everything() -> Needs {
        Needs {
            variables: VARIABLES.iter().map(|name| ((*name).to_owned(), None)).collect(),
        }
    }

    /// Whether the condition reads `variable` at all.
    pub fn variable(&self, variable: &str) -> bool {
        self.variables.contains_key(variable)
    }

    /// Whether the condition reads entry `key` of `variable` (`tasks`, `outputs`).
    pub fn entry(&self, variable: &str, key: &str) -> bool {
        match self.variables.get(variable) {
            None => false,
            Some(None) => true,
            Some(Some(keys)) => keys.contains(key),
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Compiles `source` and checks every name it uses against `vocabulary`; returns every
    /// problem found.
    pub fn compile(source: &str, vocabulary: &dyn Vocabulary) -> Result<Condition, Vec<String>> {
        let program = Program::compile(source).map_err(|errors| {
            vec![format!(
                "'{source}' is not a valid CEL expression: {}",
                errors.to_string().trim()
            )]
        })?;
        let mut accesses = Vec::new();
        collect_accesses(program.expression(), &mut Vec::new(), &mut accesses);
        let mut problems = Vec::new();
        for (root, keys) in &accesses {
            check_access(root, keys, vocabulary, &mut problems);
        }
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            return Err(problems);
        }
        let uses_tasks_done = accesses
            .iter()
            .any(|(root, keys)| *root == "phase" && keys.first() == Some(&"tasks_done"));
        let needs = Arc::new(Needs::from_accesses(&accesses));
        let mut output_reads: Vec<(String, String)> = accesses
            .iter()
            .filter_map(|(root, keys)| match (*root, keys.as_slice()) {
                ("outputs", [task, output, ..]) => Some(((*task).to_owned(), (*output).to_owned())),
                _ => None,
            })
            .collect();
        output_reads.sort();
        output_reads.dedup();
        drop(accesses);
        Ok(Condition {
            source: source.to_owned(),
            program: Arc::new(program),
            uses_tasks_done,
            needs,
            output_reads: Arc::new(output_reads),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the condition reads `phase.tasks_done` (the default gate).
    pub fn uses_tasks_done(&self) -> bool {
        self.uses_tasks_done
    }

    /// `(task, output)` of every output the condition reads by name.
    pub fn output_reads(&self) -> &[(String, String)] {
        &self.output_reads
    }

    /// What the condition reads: the variables [`Condition::evaluate`] needs bound.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// Evaluates the condition with `variables` bound (at least what
    /// [`Condition::needs`] names); an error names what went wrong (a missing key, a
    /// non-boolean result).
    pub fn evaluate(&self, variables: BTreeMap<&'static str, Value>) -> Result<bool, String> {
        ROOT_CONTEXT.with(|root| {
            let mut context = root.new_inner_scope();
            for (name, value) in variables {
                context.add_variable_from_value(name, value);
            }
            match self.program.execute(&context) {
                Ok(Value::Bool(result)) => Ok(result),
                Ok(other) => Err(format!("'{}' gave {other:?}, not true or false", self.source)),
                Err(error) => Err(format!("'{}' could not be evaluated: {error}", self.source)),
            }
        })
    }
}

/// A chain of field selections and constant-string indexes on a variable, such as
/// `outputs.review['course_correction']`: the variable and the keys, root first.
fn access_path(expression: &IdedExpr) -> Option<(&str, Vec<&str>)> {
    let mut keys = Vec::new();
    let mut current = expression;
    loop {
        match &current.expr {
            Expr::Ident(name) => {
                keys.reverse();
                return Some((name.as_str(), keys));
            }
            // `has(outputs.review.score)` names the same things as `outputs.review.score`.
            Expr::Select(select) => {
                keys.push(select.field.as_str());
                current = &select.operand;
            }
            Expr::Call(call) if call.func_name == operators::INDEX && call.target.is_none() && call.args.len() == 2 => {
                let Expr::Literal(LiteralValue::String(key)) = &call.args[1].expr else {
                    return None;
                };
                keys.push(key.inner());
                current = &call.args[0];
            }
            _ => return None,
        }
    }
}

/// Every access to a free variable (not one a comprehension binds) in `expression`.
fn collect_accesses<'e>(
    expression: &'e IdedExpr,
    scope: &mut Vec<String>,
    accesses: &mut Vec<(&'e str, Vec<&'e str>)>,
) {
    if let Some((root, keys)) = access_path(expression) {
        if !scope.iter().any(|bound| bound == root) {
            accesses.push((root, keys));
        }
        return;
    }
    let mut visit = |child: &'e IdedExpr, scope: &mut Vec<String>| {
        collect_accesses(child, scope, accesses);
    };
    match &expression.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
        Expr::Select(select) => visit(&select.operand, scope),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                visit(target, scope);
            }
            for argument in &call.args {
                visit(argument, scope);
            }
        }
        Expr::Comprehension(comprehension) => {
            visit(&comprehension.iter_range, scope);
            let depth = scope.len();
            scope.push(comprehension.iter_var.clone());
            if let Some(second) = &comprehension.iter_var2 {
                scope.push(second.clone());
            }
            scope.push(comprehension.accu_var.clone());
            for part in [
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                visit(part, scope);
            }
            scope.truncate(depth);
        }
        Expr::List(list) => {
            for element in &list.elements {
                visit(element, scope);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    visit(&entry.key, scope);
                    visit(&entry.value, scope);
                }
            }
        }
        Expr::Struct(structure) => {
            for entry in &structure.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    visit(&field.value, scope);
                }
            }
        }
    }
}

fn check_access(root: &str, keys: &[&str], vocabulary: &dyn Vocabulary, problems: &mut Vec<String>) {
    match (root, keys) {
        ("tasks", [task, rest @ ..]) => {
            let tasks = vocabulary.task_keys();
            if !tasks.contains(task) {
                problems.push(format!("unknown task '{task}'{}", dashed_hint("tasks", task, &tasks)));
            } else if let Some(field) = rest.first()
                && !TASK_FIELDS.contains(field)
            {
                problems.push(format!(
                    "tasks.{task} has no field '{field}'; it has {}",
                    TASK_FIELDS.join(", ")
                ));
            }
        }
        ("outputs", [task, rest @ ..]) => match (vocabulary.output_keys(task), rest.first()) {
            (None, _) => {
                let tasks = vocabulary.task_keys();
                problems.push(format!("unknown task '{task}'{}", dashed_hint("outputs", task, &tasks)));
            }
            (Some(outputs), Some(output)) if !outputs.contains(output) => {
                let hint = dashed_hint(&format!("outputs['{task}']"), output, &outputs);
                problems.push(format!("task '{task}' has no output '{output}'{hint}"));
            }
            _ => {}
        },
        ("people", [role, ..]) => {
            let roles = vocabulary.role_keys();
            if !roles.contains(role) {
                problems.push(format!("unknown role '{role}'{}", dashed_hint("people", role, &roles)));
            }
        }
        ("phase", [field, ..]) if !PHASE_FIELDS.contains(field) => {
            problems.push(format!(
                "phase has no field '{field}'; it has {}",
                PHASE_FIELDS.join(", ")
            ));
        }
        (variable, _) if !VARIABLES.contains(&variable) => {
            let tasks = vocabulary.task_keys();
            let outputs = tasks
                .iter()
                .flat_map(|task| vocabulary.output_keys(task).unwrap_or_default());
            let dashed = tasks
                .iter()
                .copied()
                .chain(outputs)
                .chain(vocabulary.role_keys())
                .any(|key| key.split('-').skip(1).any(|part| part.starts_with(variable)));
            let hint = if dashed {
                "; a key with a dash is read by index in CEL (outputs['goal-statement']), since a dash is minus"
            } else {
                ""
            };
            problems.push(format!(
                "unknown variable '{variable}'; conditions can use {}{hint}",
                VARIABLES.join(", ")
            ));
        }
        _ => {}
    }
}

/// When `fragment` is the start of a kebab-case key (`goal` of `goal-statement`), CEL read
/// the dash as minus: say how to reach the key by index.
fn dashed_hint(selector: &str, fragment: &str, keys: &[&str]) -> String {
    let prefix = format!("{fragment}-");
    match keys.iter().find(|key| key.starts_with(&prefix)) {
        Some(key) => {
            format!("; CEL reads the dash in '{key}' as minus: write {selector}['{key}'], or use snake_case keys")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture;

    impl Vocabulary for Fixture {
        fn task_keys(&self) -> Vec<&str> {
            vec!["review", "goal-statement"]
        }
        fn output_keys(&self, task: &str) -> Option<Vec<&str>> {
            match task {
                "review" => Some(vec!["course_correction", "next-step"]),
                "goal-statement" => Some(vec!["goal_count"]),
                _ => None,
            }
        }
        fn role_keys(&self) -> Vec<&str> {
            vec!["stakeholder", "line-manager"]
        }
    }

    fn problems(source: &str) -> Vec<String> {
        Condition::compile(source, &Fixture).err().unwrap_or_default()
    }

    #[test]
    fn accepts_known_names_and_comprehension_variables() {
        for source in [
            "outputs.review.course_correction == true",
            "outputs['review']['course_correction']",
            "tasks.review.done && phase.iteration < 3",
            "goals.size() >= 1 && goals.all(g, g.status == 'achieved')",
            "people.stakeholder >= 3",
            "commitments.exists(c, c.status == 'open')",
        ] {
            assert_eq!(problems(source), Vec::<String>::new(), "{source}");
        }
    }

    #[test]
    fn reports_unknown_names() {
        assert_eq!(problems("tasks.idp.done"), ["unknown task 'idp'"]);
        assert_eq!(
            problems("outputs.review.score > 3"),
            ["task 'review' has no output 'score'"]
        );
        assert_eq!(
            problems("goal.size() > 0"),
            ["unknown variable 'goal'; conditions can use tasks, outputs, goals, commitments, people, phase"]
        );
        assert_eq!(problems("people.sponsor > 0"), ["unknown role 'sponsor'"]);
        assert_eq!(
            problems("tasks.review.finished"),
            [
                "tasks.review has no field 'finished'; it has status, done, total, open, completed, skipped, cancelled, overdue, occurrences"
            ]
        );
    }

    #[test]
    fn kebab_case_keys_read_as_fields_get_a_hint_to_index_them() {
        assert_eq!(
            problems("outputs['goal-statement'].goal_count >= 1"),
            Vec::<String>::new()
        );
        assert_eq!(problems("tasks['goal-statement'].done"), Vec::<String>::new());
        assert_eq!(problems("people['line-manager'] >= 1"), Vec::<String>::new());
        assert_eq!(
            problems("outputs.goal-statement.goal_count >= 1"),
            [
                "unknown task 'goal'; CEL reads the dash in 'goal-statement' as minus: write outputs['goal-statement'], or use snake_case keys",
                "unknown variable 'statement'; conditions can use tasks, outputs, goals, commitments, people, phase; a key with a dash is read by index in CEL (outputs['goal-statement']), since a dash is minus",
            ]
        );
        assert_eq!(
            problems("outputs.review.next-step == 'x'"),
            [
                "task 'review' has no output 'next'; CEL reads the dash in 'next-step' as minus: write outputs['review']['next-step'], or use snake_case keys",
                "unknown variable 'step'; conditions can use tasks, outputs, goals, commitments, people, phase; a key with a dash is read by index in CEL (outputs['goal-statement']), since a dash is minus",
            ]
        );
        assert_eq!(
            problems("people.line-manager >= 1"),
            [
                "unknown role 'line'; CEL reads the dash in 'line-manager' as minus: write people['line-manager'], or use snake_case keys",
                "unknown variable 'manager'; conditions can use tasks, outputs, goals, commitments, people, phase; a key with a dash is read by index in CEL (outputs['goal-statement']), since a dash is minus",
            ]
        );
    }

    #[test]
    fn reports_syntax_errors() {
        let found = problems("tasks.review.done &&");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("'tasks.review.done &&' is not a valid CEL expression"),
            "{found:?}"
        );
    }

    #[test]
    fn needs_name_the_variables_and_entries_read() {
        let condition = Condition::compile(
            "phase.tasks_done && outputs['review'].course_correction == false && tasks.review.done",
            &Fixture,
        )
        .unwrap();
        let needs = condition.needs();
        assert!(needs.variable("phase") && needs.variable("outputs") && needs.variable("tasks"));
        assert!(!needs.variable("goals") && !needs.variable("people"));
        assert!(needs.entry("outputs", "review") && !needs.entry("outputs", "intake"));
        assert!(needs.entry("tasks", "review") && !needs.entry("tasks", "intake"));
        // Iterated: every entry.
        let condition = Condition::compile("goals.size() >= 1 && tasks.all(t, tasks[t].done)", &Fixture).unwrap();
        assert!(condition.needs().entry("tasks", "anything"));
        assert!(condition.needs().variable("goals"));
        assert!(!condition.needs().variable("outputs"));
    }

    #[test]
    fn evaluates_with_bound_variables() {
        let condition = Condition::compile("phase.iteration < 3", &Fixture).unwrap();
        let mut variables = BTreeMap::new();
        variables.insert("phase", cel::to_value(serde_json::json!({"iteration": 2})).unwrap());
        assert_eq!(condition.evaluate(variables.clone()), Ok(true));
        let condition = Condition::compile("phase.iteration", &Fixture).unwrap();
        assert!(condition.evaluate(variables).unwrap_err().contains("not true or false"));
    }
}
