//! Every built-in model driven through a whole engagement over gRPC: a stakeholder joins
//! mid-phase, approval gates are signed off, a goal is set where a gate needs one, timers
//! fire as the clock moves, and the finished engagement is found by every list filter.

use std::time::Duration;

use coachflow_integration_tests::client::{builtin_source, instance_of};
use coachflow_integration_tests::history::{self, assert_gapless};
use coachflow_integration_tests::{Backend, Driver, TestServer, engagement_name};
use coachflow_server::proto::{self, engagement::State, list_tasks_request::Queue};

use crate::support::{next_events, struct_string, watch};

/// What a built-in model's engagement must go through.
struct Expectations {
    key: &'static str,
    /// The first phase and a task open in it from the start, with a due date.
    first_phase: &'static str,
    first_task: &'static str,
    /// The phase with a `for_each: stakeholder` task, and that task's key.
    stakeholder_phase: &'static str,
    stakeholder_task: &'static str,
    /// The last occurrence of a repeating task: completing it proves the series ran on
    /// timers.
    last_occurrence: &'static str,
    phases_entered: usize,
    sign_offs: usize,
    needs_goal: bool,
}

async fn four_stage_engagement_runs_to_completion(backend: Backend) {
    builtin_engagement(
        backend,
        Expectations {
            key: "four-stage",
            first_phase: "awareness",
            first_task: "kickoff-meeting",
            stakeholder_phase: "analysis",
            stakeholder_task: "stakeholder-interviews",
            last_occurrence: "coaching-calls#6",
            phases_entered: 4,
            sign_offs: 2,
            needs_goal: true,
        },
    )
    .await;
}

async fn columbia_three_phase_engagement_runs_to_completion(backend: Backend) {
    builtin_engagement(
        backend,
        Expectations {
            key: "columbia-three-phase",
            first_phase: "context",
            first_task: "client-worldviews",
            stakeholder_phase: "content",
            stakeholder_task: "feedback-360",
            last_occurrence: "conduct-sessions#8",
            phases_entered: 3,
            sign_offs: 0,
            needs_goal: true,
        },
    )
    .await;
}

async fn seven_step_engagement_runs_to_completion(backend: Backend) {
    builtin_engagement(
        backend,
        Expectations {
            key: "seven-step",
            first_phase: "relationship",
            first_task: "initial-meeting",
            stakeholder_phase: "assessment",
            stakeholder_task: "feedback-360",
            last_occurrence: "coaching-sessions#10",
            phases_entered: 6,
            sign_offs: 2,
            needs_goal: true,
        },
    )
    .await;
}

on_both_backends!(
    four_stage_engagement_runs_to_completion,
    columbia_three_phase_engagement_runs_to_completion,
    seven_step_engagement_runs_to_completion,
);

fn open_instances(engagement: &proto::Engagement) -> Vec<String> {
    let mut open: Vec<String> = engagement
        .tasks
        .iter()
        .filter(|task| task.state() == proto::task::State::Open)
        .map(|task| instance_of(&task.name).to_owned())
        .collect();
    open.sort();
    open
}

fn names(engagements: &[proto::Engagement]) -> Vec<&str> {
    engagements.iter().map(|engagement| engagement.name.as_str()).collect()
}

async fn builtin_engagement(backend: Backend, expect: Expectations) {
    let server = TestServer::start(backend).await;
    let model = server.publish_builtin(expect.key).await;
    let id = format!("{}-1", expect.key);
    let name = engagement_name(&id);
    let started = server.create_engagement(&model, &id, 2).await;
    assert_eq!(started.name, name);
    assert_eq!(started.state(), State::Active);
    assert_eq!(started.model, model.name);
    assert_eq!(started.model_version, 1);
    let phase = started.phase.clone().expect("an active engagement has a phase");
    assert_eq!(phase.key, expect.first_phase);
    assert_eq!(phase.iteration, 1);
    let open = open_instances(&started);
    assert!(
        open.iter().any(|instance| instance == expect.first_task),
        "{} is not open at the start: {open:?}",
        expect.first_task
    );

    // The coach's queue holds exactly the coach's open tasks.
    let mut coach_open: Vec<String> = started
        .tasks
        .iter()
        .filter(|task| task.state() == proto::task::State::Open && task.assignee == "coach-1")
        .map(|task| task.name.clone())
        .collect();
    coach_open.sort();
    assert!(
        !coach_open.is_empty(),
        "the coach has nothing to do at the start: {:?}",
        started.tasks
    );
    let mut queue: Vec<String> = server
        .list_tasks("coach-1", Queue::Unspecified)
        .await
        .into_iter()
        .map(|task| task.name)
        .collect();
    queue.sort();
    assert_eq!(queue, coach_open, "ListTasks for coach-1");
    assert!(server.list_tasks("nobody-1", Queue::Unspecified).await.is_empty());

    // List filters while the engagement runs.
    let active = server
        .list_engagements(proto::ListEngagementsRequest {
            state: State::Active.into(),
            phase: expect.first_phase.to_owned(),
            model: model.name.clone(),
            person: "stakeholder-2".to_owned(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        names(&active),
        [name.as_str()],
        "active, in the first phase, of the model, with stakeholder-2"
    );
    for (what, request) in [
        (
            "another phase",
            proto::ListEngagementsRequest {
                phase: expect.stakeholder_phase.to_owned(),
                ..Default::default()
            },
        ),
        (
            "completed",
            proto::ListEngagementsRequest {
                state: State::Completed.into(),
                ..Default::default()
            },
        ),
        (
            "another person",
            proto::ListEngagementsRequest {
                person: "someone-else".to_owned(),
                ..Default::default()
            },
        ),
        (
            "overdue",
            proto::ListEngagementsRequest {
                overdue: true,
                ..Default::default()
            },
        ),
    ] {
        assert!(
            server.list_engagements(request).await.is_empty(),
            "ListEngagements filtered by {what} found the engagement"
        );
    }

    // A timer through the clock file: the first task becomes due soon, then overdue.
    let first = started
        .tasks
        .iter()
        .find(|task| instance_of(&task.name) == expect.first_task)
        .expect("the first task")
        .clone();
    let due = first.due_time.expect("the first task has a due time");
    let due = chrono::DateTime::from_timestamp(due.seconds, u32::try_from(due.nanos).unwrap_or_default())
        .expect("a valid due time");
    let mut overdue_events = watch(
        &server,
        proto::WatchEventsRequest {
            parent: "tenants/acme".to_owned(),
            start_position: 0,
            engagement: name.clone(),
            types: vec!["dev.coachflow.task.overdue.v1".to_owned()],
        },
    )
    .await;
    let mut driver = Driver::new(&server, &builtin_source(expect.key), &name);
    server.set_time(due + chrono::Duration::minutes(1));
    driver.wait_for_due_timers().await;
    let overdue = server.get_engagement(&name).await;
    let task = overdue
        .tasks
        .iter()
        .find(|task| task.name == first.name)
        .expect("the first task is still there");
    assert!(task.overdue, "{} is not overdue past its due time: {task:?}", task.name);
    assert!(
        task.due_soon,
        "{} had no reminder before its due time: {task:?}",
        task.name
    );
    // Other tasks may have come due at the same time; their events may come first.
    let open_with_due = started.tasks.iter().filter(|task| task.due_time.is_some()).count();
    let mut seen = Vec::new();
    while !seen.iter().any(|task| task == expect.first_task) {
        assert!(
            seen.len() < open_with_due,
            "no task.overdue event for {}; got them for {seen:?}",
            expect.first_task
        );
        let event = next_events(&mut overdue_events, 1, Duration::from_secs(30))
            .await
            .remove(0);
        assert_eq!(event.r#type, "dev.coachflow.task.overdue.v1");
        assert_eq!(event.subject, name);
        seen.push(
            struct_string(event.data.as_ref(), "task")
                .unwrap_or_default()
                .to_owned(),
        );
    }
    drop(overdue_events);
    let overdue_queue = server.list_tasks(&first.assignee, Queue::Overdue).await;
    assert!(
        overdue_queue.iter().any(|task| task.name == first.name),
        "ListTasks OVERDUE for {} lacks {}: {overdue_queue:?}",
        first.assignee,
        first.name
    );
    let overdue_list = server
        .list_engagements(proto::ListEngagementsRequest {
            overdue: true,
            ..Default::default()
        })
        .await;
    assert_eq!(names(&overdue_list), [name.as_str()], "ListEngagements overdue");

    // A stakeholder joins in the middle of the phase with the per-stakeholder task and gets
    // their own instance of it, which the engagement then waits for.
    driver
        .drive_until(&format!("phase {}", expect.stakeholder_phase), 500, |engagement| {
            engagement.phase.as_ref().map(|phase| phase.key.as_str()) == Some(expect.stakeholder_phase)
        })
        .await;
    let before = driver.engagement().await;
    let late_instance = format!("{}~stakeholder-late", expect.stakeholder_task);
    let joined = server
        .engagements()
        .add_participant(proto::AddParticipantRequest {
            engagement: name.clone(),
            role: "stakeholder".to_owned(),
            person: "stakeholder-late".to_owned(),
            etag: before.etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("AddParticipant failed: {status:?}"))
        .into_inner();
    assert_ne!(joined.etag, before.etag);
    let late = joined
        .tasks
        .iter()
        .find(|task| instance_of(&task.name) == late_instance)
        .unwrap_or_else(|| panic!("no {late_instance} after AddParticipant: {:?}", open_instances(&joined)));
    assert_eq!(late.state(), proto::task::State::Open, "{late:?}");
    assert_eq!(late.subject, "stakeholder-late");
    let stakeholders = joined
        .people
        .iter()
        .find(|binding| binding.role == "stakeholder")
        .expect("stakeholders are bound");
    assert_eq!(
        stakeholders.people,
        ["stakeholder-1", "stakeholder-2", "stakeholder-late"]
    );

    driver.drive_to_completion(3_000).await;

    let done = server.get_engagement(&name).await;
    assert_eq!(done.state(), State::Completed);
    assert!(
        done.phase.is_none(),
        "a completed engagement has no phase: {:?}",
        done.phase
    );
    assert!(done.tasks.is_empty(), "tasks left open: {:?}", done.tasks);
    assert!(done.end_time.is_some());

    let events = server.history(&name).await;
    assert_gapless(&name, &events);
    assert_eq!(events.len() as u64, done.event_count);
    assert_eq!(
        events.first().map(|event| event.r#type.as_str()),
        Some("engagement_started")
    );
    assert_eq!(
        events.last().map(|event| event.r#type.as_str()),
        Some("engagement_completed")
    );
    assert_eq!(history::count(&events, "phase_entered"), expect.phases_entered);
    assert_eq!(history::count(&events, "phase_signed_off"), expect.sign_offs);
    if expect.needs_goal {
        assert_eq!(history::count(&events, "goal_set"), 1);
    }
    assert_eq!(history::count(&events, "participant_added"), 1);
    for instance in [late_instance.as_str(), expect.last_occurrence] {
        assert_eq!(
            history::with_id(&events, "task_completed", instance).len(),
            1,
            "{instance} was not completed exactly once"
        );
    }
    let timers = history::timers(&events);
    assert!(
        timers.pending.is_empty(),
        "timers outlive the engagement: {:?}",
        timers.pending
    );
    assert!(
        timers.unexpected_fires.is_empty(),
        "timers fired twice: {:?}",
        timers.unexpected_fires
    );
    assert!(history::count(&events, "timer_fired") > 0);

    // The finished engagement, by every filter.
    for (what, request) in [
        (
            "state",
            proto::ListEngagementsRequest {
                state: State::Completed.into(),
                ..Default::default()
            },
        ),
        (
            "model key",
            proto::ListEngagementsRequest {
                model: expect.key.to_owned(),
                ..Default::default()
            },
        ),
        (
            "late stakeholder",
            proto::ListEngagementsRequest {
                person: "stakeholder-late".to_owned(),
                ..Default::default()
            },
        ),
        (
            "coach and model name",
            proto::ListEngagementsRequest {
                person: "coach-1".to_owned(),
                model: model.name.clone(),
                state: State::Completed.into(),
                ..Default::default()
            },
        ),
    ] {
        let found = server.list_engagements(request).await;
        assert_eq!(names(&found), [name.as_str()], "ListEngagements by {what}");
        assert_eq!(found[0].state(), State::Completed);
    }
    for (what, request) in [
        (
            "active",
            proto::ListEngagementsRequest {
                state: State::Active.into(),
                ..Default::default()
            },
        ),
        (
            "first phase",
            proto::ListEngagementsRequest {
                phase: expect.first_phase.to_owned(),
                ..Default::default()
            },
        ),
    ] {
        assert!(
            server.list_engagements(request).await.is_empty(),
            "ListEngagements {what} still finds the completed engagement"
        );
    }
    assert!(
        server.list_tasks("coach-1", Queue::Unspecified).await.is_empty(),
        "the coach still has open tasks after the engagement completed"
    );
}
