//! Who may do what: verified principals, their powers, and the one table of what every
//! method requires. Every command and query is checked here before it reads the resource it
//! names (for a person, the engagement's people and tasks are read to tell whether they
//! hold the role the method needs, and nothing else of it is used before the check passes).
//!
//! A wrong tenant, or an engagement the caller may not see, is refused the same way
//! whether or not the engagement exists (AIP-211), so a refusal tells nothing about what
//! another tenant or another engagement holds.

use std::collections::BTreeSet;
use std::fmt;

use coachflow_engine::{Actor, Audience, EngagementState, Viewer};
use serde::{Deserialize, Serialize};

/// A power a token's `scope` claim grants a system (an L&D platform, an HRIS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Publish and deprecate model versions.
    #[serde(rename = "models:write")]
    ModelsWrite,
    /// Start and drive engagements, as an L&D platform does.
    #[serde(rename = "engagements:write")]
    EngagementsWrite,
    /// Read the progress of every engagement of the tenant.
    #[serde(rename = "engagements:read")]
    EngagementsRead,
    /// Watch the tenant's public events.
    #[serde(rename = "events:read")]
    EventsRead,
    /// Break-glass reading of content; every such read is itself recorded.
    #[serde(rename = "content:read")]
    ContentRead,
    /// Erase an engagement's content or a person's data (GDPR Art. 17).
    #[serde(rename = "data:erase")]
    DataErase,
    /// Export everything held about a person (GDPR Art. 15 and 20).
    #[serde(rename = "data:export")]
    DataExport,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::ModelsWrite,
        Scope::EngagementsWrite,
        Scope::EngagementsRead,
        Scope::EventsRead,
        Scope::ContentRead,
        Scope::DataErase,
        Scope::DataExport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ModelsWrite => "models:write",
            Scope::EngagementsWrite => "engagements:write",
            Scope::EngagementsRead => "engagements:read",
            Scope::EventsRead => "events:read",
            Scope::ContentRead => "content:read",
            Scope::DataErase => "data:erase",
            Scope::DataExport => "data:export",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

/// Which tenants a principal reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tenancy {
    /// The tenant its token names, and no other.
    One(String),
    /// Every tenant: the local administrator and the service itself.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A caller with a verified token.
    Token,
    /// A caller on loopback without a token, in local mode.
    LocalAdministrator,
    /// The service itself (the timer runner, migrations it runs).
    Service,
}

/// A verified caller (serialized with the long-running operations that act as it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The token's `sub`: a person id bound in engagements, or a system's name.
    pub subject: String,
    pub tenancy: Tenancy,
    pub scopes: BTreeSet<Scope>,
    /// The system acting for the subject (the token's RFC 8693 `act.sub`).
    pub delegate: Option<String>,
    pub kind: PrincipalKind,
}

impl fmt::Display for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.delegate) {
            (PrincipalKind::LocalAdministrator, _) => formatter.write_str("local administrator"),
            (PrincipalKind::Service, _) => formatter.write_str("the service"),
            (PrincipalKind::Token, Some(delegate)) => write!(formatter, "{} (via {delegate})", self.subject),
            (PrincipalKind::Token, None) => formatter.write_str(&self.subject),
        }
    }
}

/// The name the local administrator is recorded under.
pub const LOCAL_ADMINISTRATOR: &str = "local-admin";

impl Principal {
    /// The caller of local mode without a token: every power, every tenant.
    pub fn local_administrator() -> Principal {
        Principal {
            subject: LOCAL_ADMINISTRATOR.to_owned(),
            tenancy: Tenancy::Any,
            scopes: Scope::ALL.into_iter().collect(),
            delegate: None,
            kind: PrincipalKind::LocalAdministrator,
        }
    }

    /// The service itself: the timer runner firing timers.
    pub fn service() -> Principal {
        Principal {
            subject: "coachflow".to_owned(),
            tenancy: Tenancy::Any,
            scopes: Scope::ALL.into_iter().collect(),
            delegate: None,
            kind: PrincipalKind::Service,
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the subject is bound to the engagement in any role.
    pub fn is_bound(&self, state: &EngagementState) -> bool {
        self.kind == PrincipalKind::Token && state.is_participant(&self.subject)
    }

    fn holds(&self, state: &EngagementState, roles: &[&str]) -> bool {
        self.kind == PrincipalKind::Token && roles.iter().any(|role| state.holds_role(&self.subject, role))
    }

    /// Who the history records for a change this principal makes to the engagement.
    pub fn actor(&self, state: Option<&EngagementState>) -> Actor {
        match (&self.kind, &self.delegate) {
            (PrincipalKind::Service, _) => Actor::System,
            (PrincipalKind::LocalAdministrator, _) => Actor::Service(self.subject.clone()),
            (PrincipalKind::Token, Some(delegate)) => Actor::Delegated {
                person: self.subject.clone(),
                by: delegate.clone(),
            },
            (PrincipalKind::Token, None) if state.is_some_and(|state| state.is_participant(&self.subject)) => {
                Actor::Person(self.subject.clone())
            }
            (PrincipalKind::Token, None) => Actor::Service(self.subject.clone()),
        }
    }
}

/// What a method requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any principal of the tenant (the firm's models are no secret within it).
    Tenant,
    /// A system power.
    Scope(Scope),
    /// Reading one engagement: `engagements:read` or `engagements:write`, or a person
    /// bound to it.
    Read,
    /// Changing an engagement: `engagements:write`, or a person holding one of these roles.
    Roles(&'static [&'static str]),
    /// A task's own work: `engagements:write`, the task's assignee, or a person holding one
    /// of these roles.
    Assignee(&'static [&'static str]),
    /// A sign-off: the person signing off, for a role they hold in the engagement.
    SignOff,
    /// A list: it holds what the caller may see, nothing else.
    List,
    /// The tenant's public events: `events:read`, or a person for an engagement they are
    /// bound to.
    Events,
    /// About one person: that person themself, or a system power.
    SelfOrScope(Scope),
}

/// The coach, who runs the engagement.
const COACH: &[&str] = &["coach"];
/// The coach and the client, who own the coaching records.
const COACH_AND_CLIENT: &[&str] = &["coach", "client"];

/// Every method of the API and what it requires: the one table.
pub const POLICY: &[(&str, Access)] = &[
    (
        "coachflow.v1.ModelService/CreateModel",
        Access::Scope(Scope::ModelsWrite),
    ),
    ("coachflow.v1.ModelService/ValidateModel", Access::Tenant),
    ("coachflow.v1.ModelService/GetModel", Access::Tenant),
    ("coachflow.v1.ModelService/ListModels", Access::Tenant),
    ("coachflow.v1.ModelService/ListModelVersions", Access::Tenant),
    ("coachflow.v1.ModelService/RenderModel", Access::Tenant),
    (
        "coachflow.v1.ModelService/DeprecateModelVersion",
        Access::Scope(Scope::ModelsWrite),
    ),
    (
        "coachflow.v1.ModelService/UndeprecateModelVersion",
        Access::Scope(Scope::ModelsWrite),
    ),
    ("coachflow.v1.ModelService/DiffModelVersions", Access::Tenant),
    (
        "coachflow.v1.EngagementService/CreateEngagement",
        Access::Scope(Scope::EngagementsWrite),
    ),
    ("coachflow.v1.EngagementService/GetEngagement", Access::Read),
    ("coachflow.v1.EngagementService/ListEngagements", Access::List),
    ("coachflow.v1.EngagementService/CompleteTask", Access::Assignee(&[])),
    ("coachflow.v1.EngagementService/SkipTask", Access::Assignee(COACH)),
    ("coachflow.v1.EngagementService/AssignTask", Access::Assignee(COACH)),
    ("coachflow.v1.EngagementService/AddParticipant", Access::Roles(COACH)),
    (
        "coachflow.v1.EngagementService/RecordGoal",
        Access::Roles(COACH_AND_CLIENT),
    ),
    (
        "coachflow.v1.EngagementService/RecordGoalProgress",
        Access::Roles(COACH_AND_CLIENT),
    ),
    (
        "coachflow.v1.EngagementService/RecordCommitment",
        Access::Roles(COACH_AND_CLIENT),
    ),
    (
        "coachflow.v1.EngagementService/RecordCommitmentFollowUp",
        Access::Roles(COACH_AND_CLIENT),
    ),
    ("coachflow.v1.EngagementService/SignOffPhase", Access::SignOff),
    ("coachflow.v1.EngagementService/AdvancePhase", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/ReopenTask", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/MoveToPhase", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/WithdrawSignOff", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/MigrateEngagement", Access::Roles(COACH)),
    (
        "coachflow.v1.EngagementService/MigrateEngagements",
        Access::Scope(Scope::EngagementsWrite),
    ),
    ("coachflow.v1.EngagementService/SuspendEngagement", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/ResumeEngagement", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/CancelEngagement", Access::Roles(COACH)),
    ("coachflow.v1.EngagementService/ListTasks", Access::List),
    ("coachflow.v1.EngagementService/GetHistory", Access::Read),
    (
        "coachflow.v1.EngagementService/EraseEngagementContent",
        Access::Scope(Scope::DataErase),
    ),
    (
        "coachflow.v1.EngagementService/ErasePersonData",
        Access::Scope(Scope::DataErase),
    ),
    (
        "coachflow.v1.EngagementService/ExportPersonData",
        Access::SelfOrScope(Scope::DataExport),
    ),
    ("coachflow.v1.EventService/WatchEvents", Access::Events),
    (
        "google.longrunning.Operations/GetOperation",
        Access::Scope(Scope::EngagementsWrite),
    ),
    (
        "google.longrunning.Operations/ListOperations",
        Access::Scope(Scope::EngagementsWrite),
    ),
    (
        "google.longrunning.Operations/WaitOperation",
        Access::Scope(Scope::EngagementsWrite),
    ),
    (
        "google.longrunning.Operations/CancelOperation",
        Access::Scope(Scope::EngagementsWrite),
    ),
    (
        "google.longrunning.Operations/DeleteOperation",
        Access::Scope(Scope::EngagementsWrite),
    ),
];

/// A method of the API, by its full gRPC name (`coachflow.v1.EngagementService/GetHistory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub name: &'static str,
    pub access: Access,
}

impl Method {
    /// The method named `name`; a name the table lacks requires `engagements:write`, so
    /// forgetting a method in the table fails closed.
    pub fn named(name: &'static str) -> Method {
        let access = POLICY
            .iter()
            .find(|(method, _)| *method == name)
            .map_or(Access::Scope(Scope::EngagementsWrite), |(_, access)| *access);
        Method { name, access }
    }

    /// The short name (`GetHistory`), for metrics and logs.
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit('/').next().unwrap_or(self.name)
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialReason {
    /// The resource is in another tenant than the token's.
    TenantMismatch,
    /// The method needs a system power the token lacks.
    ScopeRequired(Scope),
    /// The caller may not read or change this engagement (or it does not exist).
    NotAParticipant,
    /// The task is someone else's.
    NotTheAssignee,
    /// The caller does not hold a role the method needs in this engagement.
    RoleRequired,
    /// A sign-off must be given by the person signing off, for a role they hold.
    NotTheSigner,
}

impl DenialReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenialReason::TenantMismatch => "TENANT_MISMATCH",
            DenialReason::ScopeRequired(_) => "SCOPE_REQUIRED",
            DenialReason::NotAParticipant => "NOT_A_PARTICIPANT",
            DenialReason::NotTheAssignee => "NOT_THE_ASSIGNEE",
            DenialReason::RoleRequired => "ROLE_REQUIRED",
            DenialReason::NotTheSigner => "NOT_THE_SIGNER",
        }
    }
}

/// A refusal: why, and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenialReason,
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl Denial {
    fn new(reason: DenialReason, message: impl Into<String>) -> Denial {
        Denial {
            reason,
            message: message.into(),
        }
    }

    /// `method` needs `scope`.
    pub fn scope_required(method: Method, scope: Scope) -> Denial {
        Denial::new(
            DenialReason::ScopeRequired(scope),
            format!("{} needs the scope {}", method.short_name(), scope.as_str()),
        )
    }

    fn unseen(resource: &str) -> Denial {
        Denial::new(
            DenialReason::NotAParticipant,
            format!("the caller may not read or change {resource}, or it does not exist"),
        )
    }
}

/// What the call is about, beyond its tenant: the engagement (its state, when it exists),
/// and for task and sign-off methods the task or the role and person.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The engagement's resource name, for messages.
    pub name: Option<&'a str>,
    /// `None` when the engagement does not exist.
    pub state: Option<&'a EngagementState>,
    /// The task instance a task method names.
    pub task: Option<&'a str>,
    /// The role and person a sign-off names.
    pub sign_off: Option<(&'a str, &'a str)>,
}

/// What a permitted caller may see, and how the history names it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub viewer: Viewer,
    /// A break-glass read of content, to be recorded.
    pub break_glass: bool,
}

/// The tenant check every method starts with.
pub fn check_tenant(principal: &Principal, tenant: &str) -> Result<(), Denial> {
    match &principal.tenancy {
        Tenancy::Any => Ok(()),
        Tenancy::One(own) if own == tenant => Ok(()),
        Tenancy::One(_) => Err(Denial::new(
            DenialReason::TenantMismatch,
            format!("the caller's token does not reach tenants/{tenant}"),
        )),
    }
}

/// Whether the method can be decided without the engagement: the tenant, and a system
/// power that grants it outright. `None` means a person-based rule needs `target.state`.
pub fn check_without_state(principal: &Principal, method: Method, tenant: &str) -> Result<Option<()>, Denial> {
    check_tenant(principal, tenant)?;
    let write = principal.has(Scope::EngagementsWrite);
    let read = write || principal.has(Scope::EngagementsRead) || principal.has(Scope::ContentRead);
    Ok(match method.access {
        Access::Tenant | Access::List => Some(()),
        Access::Scope(scope) | Access::SelfOrScope(scope) if principal.has(scope) => Some(()),
        Access::Scope(scope) => return Err(Denial::scope_required(method, scope)),
        Access::Read if read => Some(()),
        Access::Events if principal.has(Scope::EventsRead) => Some(()),
        Access::Roles(_) | Access::Assignee(_) if write => Some(()),
        // Local mode's administrator stands in for everyone, sign-offs included (the history
        // records it as the signer); any other caller signs off only for itself.
        Access::SignOff if principal.kind == PrincipalKind::LocalAdministrator => Some(()),
        Access::Read
        | Access::Roles(_)
        | Access::Assignee(_)
        | Access::SignOff
        | Access::Events
        | Access::SelfOrScope(_) => None,
    })
}

/// Checks `method` for `principal` on `target` in `tenant`; what they may see if allowed.
pub fn authorize(
    principal: &Principal,
    method: Method,
    tenant: &str,
    target: Target<'_>,
    audience: &Audience,
) -> Result<Grant, Denial> {
    let granted_outright = check_without_state(principal, method, tenant)?.is_some();
    let resource = target.name.unwrap_or("the engagement");
    if !granted_outright {
        let Some(state) = target.state else {
            return Err(Denial::unseen(resource));
        };
        if !principal.is_bound(state) {
            return Err(Denial::unseen(resource));
        }
        match method.access {
            Access::Read
            | Access::Events
            | Access::Tenant
            | Access::List
            | Access::Scope(_)
            | Access::SelfOrScope(_) => {}
            Access::Roles(roles) => {
                if !principal.holds(state, roles) {
                    return Err(Denial::new(
                        DenialReason::RoleRequired,
                        format!(
                            "{} needs the role {} in {resource}",
                            method.short_name(),
                            roles.join(" or ")
                        ),
                    ));
                }
            }
            Access::Assignee(roles) => {
                let assignee = target
                    .task
                    .and_then(|task| state.tasks.get(task))
                    .and_then(|task| task.assignee.as_deref());
                if assignee != Some(principal.subject.as_str()) && !principal.holds(state, roles) {
                    let also = if roles.is_empty() {
                        String::new()
                    } else {
                        format!(" (or a {})", roles.join(" or "))
                    };
                    return Err(Denial::new(
                        DenialReason::NotTheAssignee,
                        format!(
                            "{} of {} is for the task's assignee{also}",
                            method.short_name(),
                            target.task.unwrap_or("the task")
                        ),
                    ));
                }
            }
            Access::SignOff => {}
        }
    }
    if method.access == Access::SignOff
        && principal.kind == PrincipalKind::Token
        && let Some((role, person)) = target.sign_off
    {
        // Whatever powers a person's token has, only the person signing off signs off.
        let Some(state) = target.state else {
            return Err(Denial::unseen(resource));
        };
        if person != principal.subject || !state.holds_role(&principal.subject, role) {
            return Err(Denial::new(
                DenialReason::NotTheSigner,
                format!(
                    "a sign-off for role '{role}' is given by the person signing off, with their own token, for a role they hold"
                ),
            ));
        }
    }
    Ok(grant(principal, target.state, audience))
}

/// What `principal` may see of an engagement in `state`.
pub fn grant(principal: &Principal, state: Option<&EngagementState>, audience: &Audience) -> Grant {
    if principal.kind != PrincipalKind::Token {
        return Grant {
            viewer: Viewer::everything(),
            break_glass: false,
        };
    }
    if principal.has(Scope::ContentRead) {
        return Grant {
            viewer: Viewer::everything(),
            break_glass: true,
        };
    }
    let base = if principal.has(Scope::EngagementsRead) || principal.has(Scope::EngagementsWrite) {
        Viewer::audience(audience)
    } else {
        Viewer::nobody()
    };
    let viewer = match state {
        Some(state) => base.with_roles_of(state, &principal.subject),
        None => base,
    };
    Grant {
        viewer,
        break_glass: false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn token(subject: &str, tenant: &str, scopes: &[Scope]) -> Principal {
        Principal {
            subject: subject.to_owned(),
            tenancy: Tenancy::One(tenant.to_owned()),
            scopes: scopes.iter().copied().collect(),
            delegate: None,
            kind: PrincipalKind::Token,
        }
    }

    fn state() -> EngagementState {
        let mut state = EngagementState {
            people: BTreeMap::from([
                ("client".to_owned(), vec!["client-1".to_owned()]),
                ("coach".to_owned(), vec!["coach-1".to_owned()]),
                ("sponsor".to_owned(), vec!["sponsor-1".to_owned()]),
            ]),
            ..EngagementState::default()
        };
        state.tasks.insert(
            "kickoff".to_owned(),
            serde_json::from_value(serde_json::json!({
                "id": "kickoff", "task": "kickoff", "phase": "one", "iteration": 1, "occurrence": null,
                "subject": null, "assignee": "coach-1", "status": "open", "created_at": "2026-03-02T09:00:00Z",
                "opens_at": null, "opened_at": null, "due_at": null, "closed_at": null,
                "due_soon": false, "overdue": false, "escalated": false
            }))
            .unwrap_or_else(|error| panic!("{error}")),
        );
        state
    }

    fn check(principal: &Principal, method: &'static str, target: Target<'_>) -> Result<Grant, DenialReason> {
        authorize(principal, Method::named(method), "acme", target, &Audience::default())
            .map_err(|denial| denial.reason)
    }

    const COMPLETE: &str = "coachflow.v1.EngagementService/CompleteTask";
    const SIGN_OFF: &str = "coachflow.v1.EngagementService/SignOffPhase";
    const HISTORY: &str = "coachflow.v1.EngagementService/GetHistory";

    #[test]
    fn tenants_are_isolated_whatever_the_scopes() {
        let lms = token("lms", "globex", &Scope::ALL);
        assert_eq!(
            check(&lms, HISTORY, Target::default()).err(),
            Some(DenialReason::TenantMismatch)
        );
    }

    #[test]
    fn persons_act_in_the_roles_they_hold() {
        let state = state();
        let on = |task| Target {
            name: Some("tenants/acme/engagements/e"),
            state: Some(&state),
            task: Some(task),
            sign_off: None,
        };
        assert!(check(&token("coach-1", "acme", &[]), COMPLETE, on("kickoff")).is_ok());
        assert_eq!(
            check(&token("client-1", "acme", &[]), COMPLETE, on("kickoff")).err(),
            Some(DenialReason::NotTheAssignee)
        );
        assert_eq!(
            check(&token("nobody", "acme", &[]), COMPLETE, on("kickoff")).err(),
            Some(DenialReason::NotAParticipant)
        );
        assert!(
            check(
                &token("lms", "acme", &[Scope::EngagementsWrite]),
                COMPLETE,
                on("kickoff")
            )
            .is_ok()
        );
    }

    #[test]
    fn an_engagement_that_does_not_exist_is_refused_like_one_the_caller_may_not_see() {
        let missing = Target {
            name: Some("tenants/acme/engagements/missing"),
            ..Target::default()
        };
        assert_eq!(
            check(&token("client-1", "acme", &[]), HISTORY, missing).err(),
            Some(DenialReason::NotAParticipant)
        );
        // A reader of every engagement may learn that it does not exist.
        assert!(check(&token("hris", "acme", &[Scope::EngagementsRead]), HISTORY, missing).is_ok());
    }

    #[test]
    fn only_the_signer_signs_off_for_a_role_they_hold() {
        let state = state();
        let sign = |role, person| Target {
            name: Some("tenants/acme/engagements/e"),
            state: Some(&state),
            task: None,
            sign_off: Some((role, person)),
        };
        assert!(check(&token("sponsor-1", "acme", &[]), SIGN_OFF, sign("sponsor", "sponsor-1")).is_ok());
        assert_eq!(
            check(&token("coach-1", "acme", &[]), SIGN_OFF, sign("sponsor", "sponsor-1")).err(),
            Some(DenialReason::NotTheSigner)
        );
        assert_eq!(
            check(
                &token("lms", "acme", &[Scope::EngagementsWrite]),
                SIGN_OFF,
                sign("sponsor", "sponsor-1")
            )
            .err(),
            Some(DenialReason::NotAParticipant)
        );
        // Local mode's administrator stands in for everyone (caught by the bench's auth-off
        // runs, which drive engagements without tokens).
        assert!(
            check(
                &Principal::local_administrator(),
                SIGN_OFF,
                sign("sponsor", "sponsor-1")
            )
            .is_ok()
        );
        let mut delegated = token("sponsor-1", "acme", &[]);
        delegated.delegate = Some("lms".to_owned());
        assert!(check(&delegated, SIGN_OFF, sign("sponsor", "sponsor-1")).is_ok());
        assert_eq!(
            delegated.actor(Some(&state)),
            Actor::Delegated {
                person: "sponsor-1".to_owned(),
                by: "lms".to_owned()
            }
        );
    }

    #[test]
    fn readers_see_by_role_and_systems_by_audience() {
        let state = state();
        let on = Target {
            name: Some("tenants/acme/engagements/e"),
            state: Some(&state),
            ..Target::default()
        };
        let coach = check(&token("coach-1", "acme", &[]), HISTORY, on).unwrap_or_else(|reason| panic!("{reason:?}"));
        assert!(coach.viewer.sees_text() && !coach.break_glass);
        let sponsor =
            check(&token("sponsor-1", "acme", &[]), HISTORY, on).unwrap_or_else(|reason| panic!("{reason:?}"));
        assert!(!sponsor.viewer.sees_text());
        let hris = check(&token("hris", "acme", &[Scope::EngagementsRead]), HISTORY, on)
            .unwrap_or_else(|reason| panic!("{reason:?}"));
        assert!(!hris.viewer.sees_text());
        let auditor = check(
            &token("auditor", "acme", &[Scope::EngagementsRead, Scope::ContentRead]),
            HISTORY,
            on,
        )
        .unwrap_or_else(|reason| panic!("{reason:?}"));
        assert!(auditor.viewer.sees_everything() && auditor.break_glass);
    }

    #[test]
    fn a_method_missing_from_the_table_needs_engagements_write() {
        assert_eq!(
            Method::named("coachflow.v1.EngagementService/Unknown").access,
            Access::Scope(Scope::EngagementsWrite)
        );
    }
}
