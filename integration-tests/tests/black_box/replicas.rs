//! Two replicas on one PostgreSQL database and one clock: every timer of a timer-heavy
//! workload fires exactly once, whichever replica claims it.

use std::time::Duration;

use coachflow_integration_tests::client::metric_value;
use coachflow_integration_tests::history::{self, assert_gapless};
use coachflow_integration_tests::{Backend, TestServer, engagement_name, start_time, wait_until};
use coachflow_server::proto;

const ENGAGEMENTS: usize = 30;

/// A task due in an hour with a reminder and an escalation, and a daily session series
/// whose occurrences are due in twelve hours with a reminder each.
const TIMER_MODEL: &str = r"apiVersion: coachflow.dev/v1
kind: ProcessModel
metadata:
  key: timer-heavy
  name: Timer-heavy test model
spec:
  roles:
    - key: client
      required: true
    - key: coach
      required: true
  phases:
    - key: only
      name: Only
      tasks:
        - key: plan
          name: Plan
          kind: document
          assignee: coach
          due: PT1H
          reminders: [PT30M]
          escalate_after: PT2H
        - key: sessions
          name: Session
          kind: session
          assignee: coach
          repeat:
            every: P1D
            count: 5
          due: PT12H
          reminders: [PT2H]
";

/// Minutes after the start at which the clock stops: just past every timer of the model.
fn stops() -> Vec<i64> {
    let mut stops = vec![31, 61, 121, 181];
    for day in 0..5 {
        stops.extend([day * 1440 + 601, day * 1440 + 721, (day + 1) * 1440 + 1]);
    }
    stops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_fire_every_timer_exactly_once() {
    crate::run(two_replicas_fire_every_timer_exactly_once()).await;
}

async fn two_replicas_fire_every_timer_exactly_once() {
    let a = TestServer::builder(Backend::Postgres)
        .set("instance_id", "a")
        .start()
        .await;
    let b = TestServer::builder(Backend::Postgres)
        .sharing_with(&a)
        .set("instance_id", "b")
        .start()
        .await;
    let model = a.publish(TIMER_MODEL).await;
    let names: Vec<String> = (0..ENGAGEMENTS)
        .map(|n| engagement_name(&format!("timers-{n}")))
        .collect();
    for n in 0..ENGAGEMENTS {
        let server = if n % 2 == 0 { &a } else { &b };
        server.create_engagement(&model, &format!("timers-{n}"), 0).await;
    }

    for (step, minutes) in stops().into_iter().enumerate() {
        let now = start_time() + chrono::Duration::minutes(minutes);
        a.set_time(now);
        let reader = if step % 2 == 0 { &a } else { &b };
        wait_until(
            &format!("every timer due by {now} has fired"),
            Duration::from_secs(90),
            || async {
                for name in &names {
                    let events = reader.history(name).await;
                    if history::timers(&events).pending.values().any(|at| *at <= now) {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }

    let mut fired_in_histories = 0;
    for name in &names {
        let engagement = a.get_engagement(name).await;
        let events = b.history(name).await;
        assert_gapless(name, &events);
        assert_eq!(events.len() as u64, engagement.event_count);
        let timers = history::timers(&events);
        assert!(
            timers.unexpected_fires.is_empty(),
            "{name}: timers fired twice: {:?}",
            timers.unexpected_fires
        );
        assert!(
            timers.pending.is_empty(),
            "{name}: timers never fired: {:?}",
            timers.pending
        );
        let fired = history::count(&events, "timer_fired");
        assert_eq!(
            fired,
            history::count(&events, "timer_scheduled")
                - history::count(&events, "timer_cancelled")
                - history::count(&events, "timer_deferred"),
            "{name}: every scheduled timer fires"
        );
        fired_in_histories += fired;

        let plan = engagement
            .tasks
            .iter()
            .find(|task| task.key == "plan")
            .unwrap_or_else(|| panic!("{name}: no plan task"));
        assert!(plan.due_soon && plan.overdue && plan.escalated, "{name}: {plan:?}");
        let mut sessions: Vec<&proto::Task> = engagement.tasks.iter().filter(|task| task.key == "sessions").collect();
        sessions.sort_by_key(|task| task.occurrence);
        assert_eq!(
            sessions.iter().map(|task| task.occurrence).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5],
            "{name}: sessions"
        );
        for session in sessions {
            assert_eq!(session.state(), proto::task::State::Open, "{name}: {session:?}");
            assert!(session.due_soon && session.overdue, "{name}: {session:?}");
        }
        assert_eq!(history::count(&events, "task_overdue"), 6, "{name}");
        assert_eq!(history::count(&events, "task_due_soon"), 6, "{name}");
        assert_eq!(history::count(&events, "task_escalated"), 1, "{name}");
    }

    // Each firing was one claim by one replica: the replicas' counts add up to the histories.
    let mut outcomes = Vec::new();
    let mut fired_by_replicas = 0.0;
    let mut gone = 0.0;
    for (replica, server) in [("a", &a), ("b", &b)] {
        let metrics = server.scrape_metrics().await;
        let value = |outcome| metric_value(&metrics, "coachflow_timers_fired_total", &[("outcome", outcome)]);
        let fired = value("fired").unwrap_or_default();
        fired_by_replicas += fired;
        gone += value("gone").unwrap_or_default();
        outcomes.push((replica, fired, value("gone"), value("failed")));
    }
    eprintln!("timers fired by replica (fired, gone, failed): {outcomes:?}; in histories: {fired_in_histories}");
    assert_eq!(
        fired_by_replicas, fired_in_histories as f64,
        "timers fired by the replicas vs timer_fired events: {outcomes:?}"
    );
    assert_eq!(
        gone, 0.0,
        "a replica claimed a timer that had already fired: {outcomes:?}"
    );
}
