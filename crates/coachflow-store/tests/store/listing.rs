use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use coachflow_engine::{Action, EngagementState, TaskInstance, TaskStatus};
use coachflow_store::{EngagementFilter, OpenTaskCounts, TaskCursor, TaskFilter, TaskQueue, TaskRow};

use crate::support::{
    TestDb, act, advance, commit_decision, days, decide_on, four_stage, people, seven_step, start, start_action, t0,
};

/// Five engagements of acme in different states, and one of globex; returns acme's states
/// by id.
async fn populate(db: &TestDb) -> BTreeMap<String, EngagementState> {
    let store = &db.store;
    let four = four_stage();
    start(store, four, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    start(store, four, "acme", "eng-2", people("client-2", "coach-2"), t0()).await;
    act(
        store,
        four,
        "acme",
        "eng-2",
        Action::Suspend { reason: None },
        t0() + days(1),
    )
    .await
    .unwrap();
    start(
        store,
        seven_step(),
        "acme",
        "eng-3",
        people("client-3", "coach-1"),
        t0(),
    )
    .await;
    start(store, four, "acme", "eng-4", people("client-4", "coach-2"), t0()).await;
    act(
        store,
        four,
        "acme",
        "eng-4",
        Action::Cancel { reason: None },
        t0() + days(1),
    )
    .await
    .unwrap();
    start(store, four, "acme", "eng-5", people("client-5", "coach-1"), t0()).await;
    advance(store, four, "acme", "eng-5", t0() + days(15)).await;
    start(store, four, "globex", "eng-1", people("client-1", "coach-1"), t0()).await;

    let mut states = BTreeMap::new();
    for id in ["eng-1", "eng-2", "eng-3", "eng-4", "eng-5"] {
        let loaded = store.load_engagement("acme", id).await.unwrap().unwrap();
        states.insert(id.to_owned(), loaded.state);
    }
    states
}

fn ids_where(states: &BTreeMap<String, EngagementState>, keep: impl Fn(&EngagementState) -> bool) -> Vec<String> {
    states
        .iter()
        .filter(|(_, state)| keep(state))
        .map(|(id, _)| id.clone())
        .collect()
}

pub async fn engagements_filter_and_page(db: TestDb) {
    let store = &db.store;
    let states = populate(&db).await;
    let list = |filter: EngagementFilter| async move {
        store
            .list_engagements("acme", &filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|summary| summary.id)
            .collect::<Vec<_>>()
    };

    let all = list(EngagementFilter::default()).await;
    assert_eq!(all, ["eng-1", "eng-2", "eng-3", "eng-4", "eng-5"]);

    let by_model = list(EngagementFilter {
        model_key: Some("four-stage".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_model, ["eng-1", "eng-2", "eng-4", "eng-5"]);

    for status in ["active", "suspended", "cancelled"] {
        let listed = list(EngagementFilter {
            status: Some(status.into()),
            ..Default::default()
        })
        .await;
        let expected = ids_where(&states, |state| state.status.as_str() == status);
        assert!(!expected.is_empty());
        assert_eq!(listed, expected, "status {status}");
    }

    let in_awareness = list(EngagementFilter {
        phase: Some("awareness".into()),
        ..Default::default()
    })
    .await;
    let expected = ids_where(&states, |state| {
        state.phase.as_ref().is_some_and(|phase| phase.key == "awareness")
    });
    assert!(expected.len() >= 2 && !expected.contains(&"eng-3".to_owned()));
    assert_eq!(in_awareness, expected);

    let coached_by_1 = list(EngagementFilter {
        person: Some("coach-1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(coached_by_1, ["eng-1", "eng-3", "eng-5"]);
    let stakeholder = list(EngagementFilter {
        person: Some("stakeholder-1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(stakeholder, all);

    let overdue = list(EngagementFilter {
        overdue_only: true,
        ..Default::default()
    })
    .await;
    assert_eq!(overdue, ["eng-5"]);

    let combined = list(EngagementFilter {
        model_key: Some("four-stage".into()),
        person: Some("coach-1".into()),
        status: Some("active".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(combined, ["eng-1", "eng-5"]);

    // Pages of two, by id.
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_engagements("acme", &EngagementFilter::default(), after.as_deref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().id.clone());
        pages.push(page.into_iter().map(|summary| summary.id).collect::<Vec<_>>());
    }
    assert_eq!(pages, [vec!["eng-1", "eng-2"], vec!["eng-3", "eng-4"], vec!["eng-5"]]);

    // The overdue engagement's projection.
    let summary = store
        .list_engagements("acme", &EngagementFilter::default(), Some("eng-4"), 1)
        .await
        .unwrap()
        .remove(0);
    let state = &states["eng-5"];
    let open: Vec<_> = state.open_tasks().collect();
    assert_eq!(summary.sequence, state.sequence);
    assert_eq!(summary.open_tasks as usize, open.len());
    assert_eq!(
        summary.overdue_tasks as usize,
        open.iter().filter(|task| task.overdue).count()
    );
    assert!(summary.overdue_tasks > 0);
    assert_eq!(summary.next_due_at, open.iter().filter_map(|task| task.due_at).min());
    assert_eq!(summary.updated_at, state.updated_at.unwrap());

    let globex = store
        .list_engagements("globex", &EngagementFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(globex.len(), 1);
}

/// An open task with the given due time, assigned to `assignee`.
fn open_task(id: &str, assignee: &str, due_at: Option<DateTime<Utc>>) -> TaskInstance {
    TaskInstance {
        id: id.to_owned(),
        task: id.to_owned(),
        phase: Some("awareness".to_owned()),
        iteration: 1,
        occurrence: None,
        subject: None,
        assignee: Some(assignee.to_owned()),
        status: TaskStatus::Open,
        created_at: t0(),
        opens_at: None,
        opened_at: Some(t0()),
        due_at,
        closed_at: None,
        due_soon: false,
        overdue: false,
        escalated: false,
        outputs: BTreeMap::new(),
        skip_reason: None,
    }
}

fn expected_rows(
    states: &BTreeMap<String, EngagementState>,
    assignee: &str,
    queue: TaskQueue,
) -> Vec<(String, String)> {
    let mut tasks: Vec<(&String, &TaskInstance)> = states
        .iter()
        .flat_map(|(id, state)| state.open_tasks().map(move |task| (id, task)))
        .filter(|(_, task)| task.assignee.as_deref() == Some(assignee))
        .filter(|(_, task)| match queue {
            TaskQueue::Open => true,
            TaskQueue::DueSoon => task.due_soon && !task.overdue,
            TaskQueue::Overdue => task.overdue,
        })
        .collect();
    tasks.sort_by(|(a_id, a), (b_id, b)| {
        (a.due_at.is_none(), a.due_at, a_id, &a.id).cmp(&(b.due_at.is_none(), b.due_at, b_id, &b.id))
    });
    tasks
        .into_iter()
        .map(|(id, task)| (id.clone(), task.id.clone()))
        .collect()
}

fn keys(rows: &[TaskRow]) -> Vec<(String, String)> {
    rows.iter()
        .map(|row| (row.engagement.clone(), row.task_id.clone()))
        .collect()
}

pub async fn task_queues_order_and_page(db: TestDb) {
    let store = &db.store;
    let four = four_stage();
    // Kick-off meetings of coach-1 due on different days; eng-2's is due soon, eng-3's
    // overdue; eng-5's is due when eng-1's is (ties go by engagement id).
    start(store, four, "acme", "eng-1", people("client-1", "coach-1"), t0()).await;
    start(
        store,
        four,
        "acme",
        "eng-2",
        people("client-2", "coach-1"),
        t0() + days(1),
    )
    .await;
    advance(store, four, "acme", "eng-2", t0() + days(13)).await;
    start(
        store,
        four,
        "acme",
        "eng-3",
        people("client-3", "coach-1"),
        t0() + days(2),
    )
    .await;
    advance(store, four, "acme", "eng-3", t0() + days(17)).await;
    start(store, four, "acme", "eng-5", people("client-5", "coach-1"), t0()).await;
    start(store, four, "acme", "eng-6", people("client-6", "coach-2"), t0()).await;
    start(store, four, "globex", "eng-1", people("client-1", "coach-1"), t0()).await;
    // eng-4 holds tasks without a due time, and two with the same one: the store lists
    // what the state says.
    let mut decision = decide_on(
        four,
        &EngagementState::default(),
        start_action(people("client-4", "coach-1")),
        t0(),
    );
    decision.state.tasks.values_mut().for_each(|task| task.due_at = None);
    for (id, due_at) in [
        ("b-undated", None),
        ("a-undated", None),
        ("z-dated", Some(t0() + days(14))),
        ("y-dated", Some(t0() + days(14))),
        ("other-coach", None),
    ] {
        let assignee = if id == "other-coach" { "coach-2" } else { "coach-1" };
        decision
            .state
            .tasks
            .insert(id.to_owned(), open_task(id, assignee, due_at));
    }
    commit_decision(store, "acme", "eng-4", 0, &decision, None, t0())
        .await
        .unwrap();

    let mut states = BTreeMap::new();
    for id in ["eng-1", "eng-2", "eng-3", "eng-5", "eng-6"] {
        states.insert(
            id.to_owned(),
            store.load_engagement("acme", id).await.unwrap().unwrap().state,
        );
    }
    states.insert("eng-4".to_owned(), decision.state.clone());

    for queue in [TaskQueue::Open, TaskQueue::DueSoon, TaskQueue::Overdue] {
        let filter = TaskFilter {
            assignee: "coach-1".into(),
            queue,
        };
        let expected = expected_rows(&states, "coach-1", queue);
        assert!(!expected.is_empty(), "{queue:?}");
        let all = store.list_tasks("acme", &filter, None, 100).await.unwrap();
        assert_eq!(keys(&all), expected, "{queue:?}");
        assert!(
            all.iter()
                .all(|row| row.tenant == "acme" && row.assignee.as_deref() == Some("coach-1"))
        );

        // Page by page, through a serialized cursor, gives the same rows.
        let mut paged = Vec::new();
        let mut cursor: Option<TaskCursor> = None;
        loop {
            let page = store.list_tasks("acme", &filter, cursor.as_ref(), 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            let token = serde_json::to_string(&page.last().unwrap().cursor()).unwrap();
            cursor = Some(serde_json::from_str(&token).unwrap());
            paged.extend(page);
        }
        assert_eq!(paged, all, "{queue:?}");
    }

    let open = store
        .list_tasks(
            "acme",
            &TaskFilter {
                assignee: "coach-1".into(),
                queue: TaskQueue::Open,
            },
            None,
            100,
        )
        .await
        .unwrap();
    // The kick-off rows carry what the state says.
    let kickoff = open.iter().find(|row| row.engagement == "eng-3").unwrap();
    let task = &states["eng-3"].tasks[&kickoff.task_id];
    assert_eq!(
        (
            &kickoff.task_key,
            &kickoff.phase,
            kickoff.due_at,
            kickoff.due_soon,
            kickoff.overdue,
            Some(kickoff.opened_at)
        ),
        (
            &task.task,
            &task.phase,
            task.due_at,
            task.due_soon,
            task.overdue,
            task.opened_at
        )
    );
    assert!(kickoff.overdue);
    // Undated tasks come last, by task id (eng-4's kick-off lost its due time above).
    let tail: Vec<_> = keys(&open).into_iter().rev().take(3).rev().collect();
    assert_eq!(
        tail.iter()
            .map(|(engagement, task)| (engagement.as_str(), task.as_str()))
            .collect::<Vec<_>>(),
        [
            ("eng-4", "a-undated"),
            ("eng-4", "b-undated"),
            ("eng-4", "kickoff-meeting")
        ]
    );
    // Equal due times go by engagement, then task id.
    let dated_14: Vec<_> = open
        .iter()
        .filter(|row| row.due_at == Some(t0() + days(14)))
        .map(|row| (row.engagement.as_str(), row.task_id.as_str()))
        .collect();
    assert_eq!(
        dated_14,
        [
            ("eng-1", "kickoff-meeting"),
            ("eng-4", "y-dated"),
            ("eng-4", "z-dated"),
            ("eng-5", "kickoff-meeting")
        ]
    );
    // Completing a task removes it from the queue.
    let kickoff_1 = open
        .iter()
        .find(|row| row.engagement == "eng-1")
        .unwrap()
        .task_id
        .clone();
    act(
        store,
        four,
        "acme",
        "eng-1",
        crate::support::complete(&kickoff_1),
        t0() + days(1),
    )
    .await
    .unwrap();
    let after = store
        .list_tasks(
            "acme",
            &TaskFilter {
                assignee: "coach-1".into(),
                queue: TaskQueue::Open,
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert!(
        !after
            .iter()
            .any(|row| row.engagement == "eng-1" && row.task_id == kickoff_1)
    );
}

pub async fn gauges_count_engagements_and_tasks(db: TestDb) {
    let store = &db.store;
    assert_eq!(store.count_engagements_by_status().await.unwrap(), []);
    assert_eq!(store.count_open_tasks().await.unwrap(), OpenTaskCounts::default());
    let mut states = populate(&db).await;
    states.insert(
        "globex".to_owned(),
        store.load_engagement("globex", "eng-1").await.unwrap().unwrap().state,
    );

    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for state in states.values() {
        *by_status.entry(state.status.as_str().to_owned()).or_default() += 1;
    }
    assert_eq!(
        store.count_engagements_by_status().await.unwrap(),
        by_status.into_iter().collect::<Vec<_>>()
    );

    let open: Vec<&TaskInstance> = states.values().flat_map(|state| state.open_tasks()).collect();
    let counts = store.count_open_tasks().await.unwrap();
    assert_eq!(
        counts,
        OpenTaskCounts {
            open: open.len() as u64,
            due_soon: open.iter().filter(|task| task.due_soon && !task.overdue).count() as u64,
            overdue: open.iter().filter(|task| task.overdue).count() as u64,
        }
    );
    assert!(counts.overdue > 0);
}
