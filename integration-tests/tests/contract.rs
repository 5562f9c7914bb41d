#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The event contract, docs/asyncapi.yaml, against the engine: every event type the engine
//! can publish is in the contract and nothing else is; real public events of every type,
//! as binary and as structured messages, pass it; and messages that break it are refused
//! with an error that names the field. No server, database or broker is needed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use coachflow_broker::cloudevents::{CloudEvent, ContentMode, message};
use coachflow_engine::{
    Action, Actor, Audience, Command, Decision, EngagementRef, EngagementState, GoalStatus, Mapping, Migration,
    PUBLIC_EVENTS, decide, migrate,
};
use coachflow_integration_tests::amqp::field_table_to_json;
use coachflow_integration_tests::contract::{BINARY_CONTENT_TYPE, Contract};
use coachflow_model::Model;
use coachflow_server::application::outbox_rows;
use coachflow_store::OutboxRow;
use serde_json::{Value, json};

const TENANT: &str = "acme";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A model with one of everything a public event can report: a task with reminders, a due
/// date and an escalation that marks a milestone and records outputs of every type (typed
/// ones visible to the `integration` audience, free text and one typed value only to the
/// coach), an optional `for_each` task, a phase exit milestone, and a repeating task in a
/// last phase.
const MODEL: &str = r"
apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: contract-check
  name: Every public event
spec:
  roles:
    - key: client
      required: true
    - key: coach
      required: true
    - key: stakeholder
      multiple: true
  milestones:
    - key: intake-done
    - key: intake-phase-done
  phases:
    - key: intake
      name: Intake
      tasks:
        - key: intake-form
          name: Intake form
          kind: document
          assignee: coach
          due: P7D
          reminders: [P2D]
          escalate_after: P10D
          milestone: intake-done
          outputs:
            - {key: score, type: number, visibility: [integration]}
            - {key: sessions, type: integer, visibility: [integration]}
            - {key: consent, type: boolean, visibility: [integration]}
            - {key: start_on, type: date, visibility: [integration]}
            - {key: track, type: enum, values: [fast, standard], visibility: [integration]}
            - {key: notes, type: text, visibility: [coach, client]}
            - {key: doc_ref, type: string, visibility: [coach]}
            - {key: coach_rating, type: integer, visibility: [coach]}
        - key: interviews
          name: Stakeholder interview
          kind: interview
          for_each: stakeholder
          assignee: coach
          optional: true
      exit:
        milestone: intake-phase-done
    - key: coaching
      name: Coaching
      tasks:
        - key: calls
          name: Coaching call
          kind: session
          assignee: coach
          repeat:
            every: P1W
            count: 2
";

/// One engagement driven through the engine as the server drives it: each decision's
/// public events are made from the decision's state, the timers fire in order as the clock
/// moves.
struct Engagement {
    model: Model,
    name: String,
    state: EngagementState,
    now: DateTime<Utc>,
    published: Vec<Published>,
}

impl Engagement {
    fn start(id: &str, now: &str) -> Engagement {
        let model = Model::from_text(MODEL).unwrap_or_else(|problems| panic!("test model: {problems}"));
        let mut engagement = Engagement {
            model,
            name: format!("tenants/{TENANT}/engagements/{id}"),
            state: EngagementState::default(),
            now: now.parse().unwrap(),
            published: Vec::new(),
        };
        let people = BTreeMap::from([
            ("client".to_owned(), vec!["emp.4412".to_owned()]),
            ("coach".to_owned(), vec!["coach-7".to_owned()]),
            ("stakeholder".to_owned(), vec!["emp_1001".to_owned()]),
        ]);
        engagement.run(Action::Start {
            model_version: 1,
            timezone: Some("Europe/Berlin".to_owned()),
            people,
        });
        engagement
    }

    fn run(&mut self, action: Action) {
        self.run_as(Actor::Person("coach-7".to_owned()), action);
    }

    fn run_as(&mut self, actor: Actor, action: Action) {
        let name = action.name();
        let decision = decide(&self.model, &self.state, &Command { actor, action }, self.now)
            .unwrap_or_else(|error| panic!("{name}: {error:?}"));
        self.record(decision);
    }

    /// Moves the engagement to `to` (version 2 of its model) with `mapping`.
    fn migrate(&mut self, to: Model, mapping: &Mapping) {
        let migration = Migration {
            from: &self.model,
            to: &to,
            to_version: 2,
            mapping,
            reason: "the firm renamed a phase",
        };
        let decision = migrate(&migration, &self.state, &Actor::Person("coach-7".to_owned()), self.now)
            .unwrap_or_else(|conflicts| panic!("migrate: {conflicts:?}"));
        self.model = to;
        self.record(decision);
    }

    /// Keeps the decision's public events, as the outbox holds them, and its state.
    fn record(&mut self, decision: Decision) {
        let engagement = EngagementRef { name: &self.name };
        let rows = outbox_rows(TENANT, engagement, &self.model, &Audience::default(), &decision, None);
        let id = self.name.rsplit('/').next().unwrap_or_default().to_owned();
        self.published.extend(rows.into_iter().map(|row| Published {
            data: serde_json::from_str(&row.data).unwrap(),
            row: OutboxRow {
                position: 0,
                tenant: TENANT.to_owned(),
                engagement: id.clone(),
                event_id: row.event_id,
                sequence: row.sequence,
                event_type: row.event_type,
                routing_key: row.routing_key,
                subject: row.subject,
                time: row.time,
                data: row.data,
                traceparent: row.traceparent,
                created_at: self.now,
            },
        }));
        self.state = decision.state;
    }

    /// Moves the clock to `until`, firing every timer due by then, earliest first.
    fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        loop {
            let next = self
                .state
                .timers
                .values()
                .filter(|timer| !timer.deferred && timer.at <= until)
                .min_by_key(|timer| (timer.at, timer.id.clone()))
                .map(|timer| (timer.id.clone(), timer.at));
            let Some((timer, at)) = next else { break };
            self.now = self.now.max(at);
            self.run_as(Actor::System, Action::FireTimer { timer });
        }
        self.now = until;
    }

    fn complete(&mut self, task: &str, outputs: Value) {
        let Value::Object(outputs) = outputs else {
            panic!("outputs must be an object");
        };
        self.run(Action::CompleteTask {
            task: task.to_owned(),
            outputs: outputs.into_iter().collect(),
        });
    }
}

/// Public events of every type, from three engagements: one run to its end, one moved to
/// version 2 of the model, one cancelled.
/// A public event as the outbox holds it (written by the server's own mapping), and its data.
#[derive(Debug, Clone)]
struct Published {
    row: OutboxRow,
    data: Value,
}

impl Published {
    fn event_type(&self) -> &str {
        &self.row.event_type
    }

    fn id(&self) -> &str {
        &self.row.event_id
    }

    fn subject(&self) -> &str {
        &self.row.subject
    }

    fn traced(&self, traceparent: Option<&str>) -> OutboxRow {
        OutboxRow {
            traceparent: traceparent.map(str::to_owned),
            ..self.row.clone()
        }
    }
}

fn events_of_every_type() -> Vec<Published> {
    // Starts at a time with milliseconds, so times with fractions are checked too.
    let mut engagement = Engagement::start("eng-1", "2026-03-02T08:00:00.250Z");
    // The intake form's reminder, due time and escalation pass; meanwhile the engagement
    // is suspended and resumed, and a goal is set and achieved.
    engagement.advance(Duration::days(6));
    engagement.run(Action::Suspend {
        reason: Some("client on leave".to_owned()),
    });
    engagement.advance(Duration::days(2));
    engagement.run(Action::Resume);
    engagement.advance(Duration::days(3));
    engagement.run(Action::RecordGoal {
        goal: "delegation".to_owned(),
        title: "Delegate the weekly operations review".to_owned(),
        measure: Some("reviews chaired by a direct report".to_owned()),
        target: Some("4 of 4".to_owned()),
        due: None,
    });
    engagement.run(Action::RecordGoalProgress {
        goal: "delegation".to_owned(),
        progress: 100,
        status: Some(GoalStatus::Achieved),
        note: Some("chaired all four".to_owned()),
    });
    engagement.run(Action::SkipTask {
        task: "interviews~emp_1001".to_owned(),
        reason: "stakeholder left the company".to_owned(),
    });
    engagement.complete(
        "intake-form",
        json!({
            "score": 4.5,
            "sessions": 6,
            "consent": true,
            "start_on": "2026-04-01",
            "track": "fast",
            "notes": "confidential words",
            "doc_ref": "doc-17",
            "coach_rating": 3,
        }),
    );
    // The coaching phase: two weekly calls, then the engagement completes.
    engagement.complete("calls#1", json!({}));
    engagement.advance(Duration::weeks(1));
    engagement.complete("calls#2", json!({}));

    // Version 2 renames the coaching phase; an engagement still in intake moves to it.
    let mut migrated = Engagement::start("eng-3", "2026-03-02T08:00:00Z");
    let v2 = Model::from_text(&MODEL.replace("key: coaching\n", "key: coaching_calls\n"))
        .unwrap_or_else(|problems| panic!("version 2: {problems}"));
    migrated.migrate(
        v2,
        &Mapping {
            phases: BTreeMap::from([("coaching".to_owned(), "coaching_calls".to_owned())]),
            ..Mapping::default()
        },
    );

    let mut cancelled = Engagement::start("eng-2", "2026-03-02T08:00:00Z");
    cancelled.run(Action::Cancel {
        reason: Some("budget cut".to_owned()),
    });
    // After it ended: the stakeholder's data, then the whole content, erased.
    cancelled.run(Action::ErasePerson {
        person: "emp_1001".to_owned(),
        pseudonym: "erased-0a1b2c3d4e5f6a7b".to_owned(),
    });
    cancelled.run(Action::EraseContent);

    let mut events = engagement.published;
    events.extend(migrated.published);
    events.extend(cancelled.published);
    events
}

/// The AMQP headers of `event` in binary mode, as the relay's envelope makes them.
fn binary_headers(event: &Published, traceparent: Option<&str>) -> Value {
    let message = message(&event.traced(traceparent), ContentMode::Binary).unwrap();
    field_table_to_json(message.properties.headers().as_ref().unwrap())
}

/// The body of `event` in structured mode, as the relay's envelope makes it.
fn structured_body(event: &Published, traceparent: Option<&str>) -> Value {
    CloudEvent::of(&event.traced(traceparent)).structured().unwrap()
}

fn event_of_type<'a>(events: &'a [Published], event_type: &str) -> &'a Published {
    events
        .iter()
        .find(|event| event.event_type() == event_type)
        .unwrap_or_else(|| panic!("no {event_type} event"))
}

/// Validates a binary message and returns its errors; panics if it passed.
fn refused_binary(contract: &Contract, headers: &Value, data: &Value) -> Vec<String> {
    let body = serde_json::to_vec(data).unwrap();
    contract
        .validate_binary(headers, BINARY_CONTENT_TYPE, &body)
        .expect_err("the contract should refuse this message")
}

fn assert_named(errors: &[String], needles: &[&str]) {
    assert!(
        errors
            .iter()
            .any(|error| needles.iter().all(|needle| error.contains(needle))),
        "no error names {needles:?}: {errors:#?}"
    );
}

#[test]
fn the_contract_has_a_message_for_every_type_the_engine_publishes_and_no_other() {
    let contract = Contract::load();
    let published: BTreeSet<String> = PUBLIC_EVENTS
        .iter()
        .map(|(entity, action)| format!("dev.coachflow.{entity}.{action}.v1"))
        .collect();
    let documented: BTreeSet<String> = contract.event_types().into_iter().collect();
    assert_eq!(
        documented.difference(&published).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented, but the engine never publishes them"
    );
    assert_eq!(
        published.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "published by the engine, but not in docs/asyncapi.yaml"
    );
    let structured: BTreeSet<String> = contract.structured_event_types().into_iter().collect();
    assert_eq!(
        structured, documented,
        "every event type has a structured-mode message too"
    );
}

#[test]
fn the_document_examples_satisfy_their_own_messages() {
    let contract = Contract::load();
    let examples = contract.binary_examples();
    assert_eq!(examples.len(), PUBLIC_EVENTS.len(), "one example per binary message");
    for example in examples {
        let body = serde_json::to_vec(&example.payload).unwrap();
        if let Err(errors) = contract.validate_binary(&example.headers, BINARY_CONTENT_TYPE, &body) {
            panic!("the example of {} is refused: {errors:#?}", example.message);
        }
    }
}

#[test]
fn real_events_of_every_type_pass_the_contract_in_both_content_modes() {
    let contract = Contract::load();
    let events = events_of_every_type();
    let seen: BTreeSet<String> = events.iter().map(|event| event.event_type().to_owned()).collect();
    assert_eq!(
        seen,
        contract.event_types().into_iter().collect(),
        "the scenario should publish every event type"
    );
    for (index, event) in events.iter().enumerate() {
        // Every other event as if its command had been traced.
        let traceparent = (index % 2 == 0).then_some(TRACEPARENT);
        let body = serde_json::to_vec(&event.data).unwrap();
        let headers = binary_headers(event, traceparent);
        if let Err(errors) = contract.validate_binary(&headers, BINARY_CONTENT_TYPE, &body) {
            panic!("binary {} refused: {errors:#?}\ndata: {:#}", event.id(), event.data);
        }
        let structured = serde_json::to_vec(&structured_body(event, traceparent)).unwrap();
        if let Err(errors) = contract.validate_structured(&structured) {
            panic!("structured {} refused: {errors:#?}\ndata: {:#}", event.id(), event.data);
        }
    }
    // The completed intake form carries its typed outputs visible to `integration`, and
    // none of the others.
    let completed = events
        .iter()
        .find(|event| event.event_type() == "dev.coachflow.task.completed.v1" && event.data["task"] == "intake-form")
        .expect("the intake form's completion");
    assert_eq!(
        completed.data["outputs"],
        json!({"score": 4.5, "sessions": 6, "consent": true, "start_on": "2026-04-01", "track": "fast"})
    );
}

#[test]
fn payloads_that_break_the_contract_are_refused_naming_the_field() {
    let contract = Contract::load();
    let events = events_of_every_type();
    let completed = event_of_type(&events, "dev.coachflow.task.completed.v1");
    let headers = binary_headers(completed, None);
    let body = serde_json::to_vec(&completed.data).unwrap();
    assert_eq!(contract.validate_binary(&headers, BINARY_CONTENT_TYPE, &body), Ok(()));

    let mut extra = completed.data.clone();
    extra["priority"] = json!("high");
    assert_named(
        &refused_binary(&contract, &headers, &extra),
        &["taskCompleted", "payload", "priority"],
    );

    let mut missing = completed.data.clone();
    missing.as_object_mut().unwrap().remove("key");
    assert_named(
        &refused_binary(&contract, &headers, &missing),
        &["taskCompleted", "payload", "'key'"],
    );

    let mut wrong_type = completed.data.clone();
    wrong_type["sequence"] = json!("7");
    assert_named(
        &refused_binary(&contract, &headers, &wrong_type),
        &["taskCompleted", "payload/sequence", "want integer"],
    );

    let mut bad_output = completed.data.clone();
    bad_output["outputs"]["track"] = json!({"label": "fast"});
    assert_named(
        &refused_binary(&contract, &headers, &bad_output),
        &["payload/outputs/track"],
    );

    let mut bad_name = completed.data.clone();
    bad_name["engagement"] = json!("engagements/eng-1");
    let errors = refused_binary(&contract, &headers, &bad_name);
    assert_named(&errors, &["payload/engagement", "does not match pattern"]);
    assert_named(&errors, &["payload/engagement", "want the subject"]);
}

#[test]
fn confidential_fields_are_refused() {
    let contract = Contract::load();
    let events = events_of_every_type();
    for (event_type, field, value) in [
        ("dev.coachflow.task.completed.v1", "notes", json!("confidential words")),
        (
            "dev.coachflow.task.skipped.v1",
            "reason",
            json!("stakeholder left the company"),
        ),
        (
            "dev.coachflow.goal.set.v1",
            "title",
            json!("Delegate the weekly operations review"),
        ),
        (
            "dev.coachflow.engagement.suspended.v1",
            "reason",
            json!("client on leave"),
        ),
    ] {
        let event = event_of_type(&events, event_type);
        let mut data = event.data.clone();
        data[field] = value.clone();
        let errors = refused_binary(&contract, &binary_headers(event, None), &data);
        assert_named(&errors, &["payload", field]);

        let mut structured = structured_body(event, None);
        structured["data"][field] = value;
        let errors = contract
            .validate_structured(&serde_json::to_vec(&structured).unwrap())
            .expect_err("a structured event with a confidential field");
        assert_named(&errors, &["payload/data", field]);
    }
}

#[test]
fn headers_that_break_the_contract_are_refused_naming_the_header() {
    let contract = Contract::load();
    let events = events_of_every_type();
    let opened = event_of_type(&events, "dev.coachflow.task.opened.v1");

    let mut unknown = binary_headers(opened, None);
    unknown["cloudEvents_type"] = json!("dev.coachflow.task.reopened.v1");
    assert_named(
        &refused_binary(&contract, &unknown, &opened.data),
        &[
            "cloudEvents_type",
            "dev.coachflow.task.reopened.v1",
            "not an event type",
        ],
    );

    let mut missing = binary_headers(opened, None);
    missing.as_object_mut().unwrap().remove("cloudEvents_type");
    assert_named(
        &refused_binary(&contract, &missing, &opened.data),
        &["cloudEvents_type", "missing"],
    );

    let mut other_id = binary_headers(opened, None);
    other_id["cloudEvents_id"] = json!(format!("{}/events/999", opened.subject()));
    assert_named(
        &refused_binary(&contract, &other_id, &opened.data),
        &["taskOpened", "headers/cloudEvents_id", "{subject}/events/{sequence}"],
    );

    let mut local_time = binary_headers(opened, None);
    local_time["cloudEvents_time"] = json!("2026-03-02T09:00:00+01:00");
    assert_named(
        &refused_binary(&contract, &local_time, &opened.data),
        &["taskOpened", "headers/cloudEvents_time"],
    );

    let mut stray = binary_headers(opened, None);
    stray["cloudEvents_notes"] = json!("confidential words");
    assert_named(
        &refused_binary(&contract, &stray, &opened.data),
        &["headers", "cloudEvents_notes"],
    );

    let body = serde_json::to_vec(&opened.data).unwrap();
    let errors = contract
        .validate_binary(&binary_headers(opened, None), "text/plain", &body)
        .expect_err("a binary message of the wrong content type");
    assert_named(&errors, &["taskOpened", "content_type"]);

    let mut structured = structured_body(opened, None);
    structured["datacontenttype"] = json!("application/xml");
    let errors = contract
        .validate_structured(&serde_json::to_vec(&structured).unwrap())
        .expect_err("a structured event with the wrong data content type");
    assert_named(&errors, &["taskOpenedStructured", "payload/datacontenttype"]);
}

#[test]
fn a_binary_message_of_one_type_cannot_carry_the_data_of_another() {
    let contract = Contract::load();
    let events = events_of_every_type();
    let opened = event_of_type(&events, "dev.coachflow.task.opened.v1");
    let reached = event_of_type(&events, "dev.coachflow.milestone.reached.v1");
    let mut headers = binary_headers(opened, None);
    headers["cloudEvents_type"] = json!(reached.event_type());
    let errors = refused_binary(&contract, &headers, &opened.data);
    assert_named(&errors, &["milestoneReached", "payload"]);
}
