//! Who may see which content of an engagement: confidentiality as a rule of the domain.
//!
//! Content is what a coaching engagement says, not how far it has got: task outputs, goal
//! wording (title, measure, target), progress and follow-up notes, commitment text and the
//! free-text reasons of skips, suspensions, cancellations and repairs. Progress (ids, keys,
//! states, times, counts) is readable by everyone who may read the engagement at all.
//!
//! An output is seen by the roles its `visibility` lists (empty: the coach and the client);
//! an audience of systems (`integration`, or a role name given to the events' audience) sees
//! only typed values it is listed for, never free text. Free text is seen by the coach and
//! the client.

use std::collections::BTreeSet;

use coachflow_model::{Model, Output};

use crate::public::{Audience, publishable};
use crate::state::EngagementState;

/// The roles that see an output whose `visibility` is empty, and every free-text field.
pub const CONTENT_ROLES: [&str; 2] = ["coach", "client"];

/// What one reader may see of one engagement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The reader's roles in the engagement (a person bound to it).
    roles: BTreeSet<String>,
    /// Names a system reader answers to (`integration`, ...): typed outputs only.
    audience: BTreeSet<String>,
    /// Sees everything (break-glass `content:read`, the local administrator).
    everything: bool,
}

impl Viewer {
    /// A reader who sees nothing but progress.
    pub fn nobody() -> Viewer {
        Viewer::default()
    }

    /// A reader who sees all content.
    pub fn everything() -> Viewer {
        Viewer {
            everything: true,
            ..Viewer::default()
        }
    }

    /// A system reader: what `audience` may receive in events.
    pub fn audience(audience: &Audience) -> Viewer {
        Viewer {
            audience: audience.names().iter().cloned().collect(),
            ..Viewer::default()
        }
    }

    /// The roles `person` holds in the engagement, added to this reader's.
    pub fn with_roles_of(mut self, state: &EngagementState, person: &str) -> Viewer {
        for (role, people) in &state.people {
            if people.iter().any(|bound| bound == person) {
                self.roles.insert(role.clone());
            }
        }
        self
    }

    pub fn sees_everything(&self) -> bool {
        self.everything
    }

    pub fn roles(&self) -> &BTreeSet<String> {
        &self.roles
    }

    /// Whether the reader may see values of `output`.
    pub fn sees_output(&self, output: &Output) -> bool {
        if self.everything {
            return true;
        }
        let listed = |names: &BTreeSet<String>| {
            if output.visibility.is_empty() {
                CONTENT_ROLES.iter().any(|role| names.contains(*role))
            } else {
                output.visibility.iter().any(|name| names.contains(name))
            }
        };
        listed(&self.roles)
            || (publishable(output.output_type) && !output.visibility.is_empty() && listed(&self.audience))
    }

    /// Whether the reader may see free text: goal wording, notes, descriptions, reasons.
    pub fn sees_text(&self) -> bool {
        self.everything || CONTENT_ROLES.iter().any(|role| self.roles.contains(*role))
    }

    /// Whether the reader may see output `key` of the model's task `task`; `false` for an
    /// output or task the model does not declare.
    pub fn sees_task_output(&self, model: &Model, task: &str, key: &str) -> bool {
        let Some(id) = model.task_id(task) else {
            return self.everything;
        };
        model
            .task_spec(id)
            .outputs
            .iter()
            .find(|output| output.key == key)
            .map_or(self.everything, |output| self.sees_output(output))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use coachflow_model::OutputType;

    use super::*;

    fn output(output_type: OutputType, visibility: &[&str]) -> Output {
        Output {
            key: "x".to_owned(),
            output_type,
            description: None,
            required: false,
            values: Vec::new(),
            visibility: visibility.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    fn person(roles: &[&str]) -> Viewer {
        let state = EngagementState {
            people: roles
                .iter()
                .map(|role| ((*role).to_owned(), vec!["p".to_owned()]))
                .collect::<BTreeMap<_, _>>(),
            ..EngagementState::default()
        };
        Viewer::nobody().with_roles_of(&state, "p")
    }

    #[test]
    fn outputs_follow_their_visibility_and_default_to_coach_and_client() {
        let coach_only = output(OutputType::Text, &["coach"]);
        let default = output(OutputType::Text, &[]);
        assert!(person(&["coach"]).sees_output(&coach_only));
        assert!(!person(&["client"]).sees_output(&coach_only));
        assert!(!person(&["sponsor", "hr"]).sees_output(&coach_only));
        assert!(person(&["client"]).sees_output(&default));
        assert!(!person(&["sponsor"]).sees_output(&default));
        assert!(Viewer::everything().sees_output(&coach_only));
        assert!(!Viewer::nobody().sees_output(&default));
    }

    #[test]
    fn systems_see_typed_outputs_they_are_listed_for_and_never_text() {
        let integration = Viewer::audience(&Audience::default());
        assert!(integration.sees_output(&output(OutputType::Integer, &["integration"])));
        assert!(!integration.sees_output(&output(OutputType::Integer, &["hr"])));
        assert!(!integration.sees_output(&output(OutputType::Integer, &[])));
        let hr_system = Viewer::audience(&Audience::new(["hr"]));
        assert!(!hr_system.sees_output(&output(OutputType::String, &["hr"])));
        assert!(hr_system.sees_output(&output(OutputType::Enum, &["hr"])));
        assert!(!integration.sees_text());
    }

    #[test]
    fn free_text_is_for_the_coach_and_the_client() {
        assert!(person(&["coach"]).sees_text());
        assert!(person(&["client", "stakeholder"]).sees_text());
        assert!(!person(&["sponsor", "hr", "stakeholder"]).sees_text());
        assert!(Viewer::everything().sees_text());
    }
}
