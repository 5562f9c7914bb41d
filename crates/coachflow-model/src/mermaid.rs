//! A Mermaid flowchart of a model: phases with their tasks and dependencies, exit gates,
//! and transitions (loops included).

use std::fmt::Write as _;

use crate::document::{ProcessModel, Task};

/// Renders `model` as a Mermaid `flowchart`.
pub fn render_mermaid(model: &ProcessModel) -> String {
    let mut out = String::new();
    let spec = &model.spec;
    out.push_str("flowchart TD\n");
    let _ = writeln!(out, "  start((\"{}\"))", label(&model.metadata.name));
    if let Some(first) = spec.phases.first() {
        let _ = writeln!(out, "  start --> {}", node_id(&first.key));
    }
    for (index, phase) in spec.phases.iter().enumerate() {
        let phase_id = node_id(&phase.key);
        let _ = writeln!(out, "  subgraph {phase_id}[\"{}\"]", label(&phase.name));
        out.push_str("    direction TB\n");
        render_tasks(&mut out, &phase.key, &phase.tasks);
        out.push_str("  end\n");
        let gate_id = format!("{phase_id}__exit");
        let mut gate = vec![match phase.exit.as_ref().and_then(|exit| exit.when.as_ref()) {
            Some(when) => format!("exit when {when}"),
            None => "exit when every required task is done".to_owned(),
        }];
        if let Some(exit) = &phase.exit {
            if !exit.approval.is_empty() {
                gate.push(format!("sign-off: {}", exit.approval.join(", ")));
            }
            if let Some(milestone) = &exit.milestone {
                gate.push(format!("milestone: {milestone}"));
            }
            if exit.manual {
                gate.push("advanced by hand".to_owned());
            }
        }
        let _ = writeln!(out, "  {gate_id}{{{{\"{}\"}}}}", label(&gate.join("\n")));
        let _ = writeln!(out, "  {phase_id} --> {gate_id}");
        let mut always = false;
        for transition in &phase.next {
            match &transition.when {
                Some(when) => {
                    let _ = writeln!(out, "  {gate_id} -->|\"{}\"| {}", label(when), node_id(&transition.to));
                }
                None => {
                    let _ = writeln!(out, "  {gate_id} --> {}", node_id(&transition.to));
                    always = true;
                    break;
                }
            }
        }
        if !always {
            let fallback = spec
                .phases
                .get(index + 1)
                .map_or_else(|| "finish".to_owned(), |next| node_id(&next.key));
            let _ = writeln!(out, "  {gate_id} --> {fallback}");
        }
    }
    out.push_str("  finish((\"completed\"))\n");
    if !spec.throughout.is_empty() {
        out.push_str("  subgraph throughout[\"Throughout the engagement\"]\n    direction TB\n");
        render_tasks(&mut out, "throughout", &spec.throughout);
        out.push_str("  end\n");
    }
    out
}

fn render_tasks(out: &mut String, group: &str, tasks: &[Task]) {
    for task in tasks {
        let mut lines = vec![task.name.clone()];
        let mut facts = vec![task.kind.as_str().to_owned()];
        if let Some(assignee) = &task.assignee {
            facts.push(assignee.clone());
        }
        if let Some(role) = &task.for_each {
            facts.push(format!("each {role}"));
        }
        if task.optional {
            facts.push("optional".to_owned());
        }
        lines.push(facts.join(" · "));
        if let Some(delay) = &task.start_after {
            lines.push(format!("starts after {delay}"));
        }
        if let Some(due) = &task.due {
            lines.push(format!("due {due}"));
        }
        if let Some(repeat) = &task.repeat {
            let cadence = repeat.every.as_ref().map_or_else(
                || format!("cron {}", repeat.cron.as_deref().unwrap_or_default()),
                |every| format!("every {every}"),
            );
            let bound = match (repeat.count, &repeat.until) {
                (Some(count), _) => format!(" × {count}"),
                (None, Some(until)) => format!(" for {until}"),
                (None, None) => String::new(),
            };
            lines.push(format!("repeats {cadence}{bound}"));
        }
        if let Some(milestone) = &task.milestone {
            lines.push(format!("milestone: {milestone}"));
        }
        let id = format!("{}__{}", node_id(group), node_id(&task.key));
        let _ = writeln!(out, "    {id}[\"{}\"]", label(&lines.join("\n")));
        for dependency in &task.after {
            let _ = writeln!(out, "    {}__{} --> {id}", node_id(group), node_id(dependency));
        }
    }
}

/// Mermaid ids cannot hold dashes safely.
fn node_id(key: &str) -> String {
    key.replace('-', "_")
}

/// Text inside a quoted Mermaid label: quotes and angle brackets (CEL's `<`) as entities,
/// line breaks as `<br/>`.
fn label(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace('\n', "<br/>")
}
