//! The timer runner: claims due timers in batches and fires each as a `FireTimer` command
//! through the same path as every other change. A batch's engagements are read together
//! first ([`Core::preload`]), and its commands, in flight together, share the group commit's
//! transactions: a storm of due timers costs a few reads and writes per batch, not per timer.
//!
//! Exactly once: a claim (with `FOR UPDATE SKIP LOCKED` on PostgreSQL) gives a timer to one
//! replica for the lease; if the lease runs out while the command is in flight and another
//! replica fires it too, the engagement's sequence guard lets one commit and the other finds
//! the timer gone, which the engine treats as nothing to do. After downtime every timer
//! already due is claimed at once: missed timers fire on start.

use std::sync::Arc;
use std::time::Duration;

use coachflow_engine::Action;
use coachflow_store::DueTimer;
use futures_util::StreamExt as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::application::authorization::{Access, Scope};
use crate::application::{AppError, Core, EngagementName, Method, Mutation, Principal};
use crate::metrics as names;
use crate::trace;

/// The runner's own command: not a method of the API.
const FIRE_TIMER: Method = Method {
    name: "coachflow.internal/FireTimer",
    access: Access::Scope(Scope::EngagementsWrite),
};

/// Claimed batches fired at once: two fire while the next is claimed and read (with one,
/// a storm on PostgreSQL took about 1.09× as long: BENCHMARKS.md).
const BATCHES_IN_FLIGHT: usize = 3;

/// The shortest pause between looks at the timers table.
const MIN_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// This replica's name in claims.
    pub owner: String,
    pub batch_size: u64,
    pub concurrency: usize,
    pub lease: Duration,
    /// Longest sleep between looks at the timers table.
    pub poll_interval: Duration,
}

/// Runs until `shutdown` turns true; timers in flight finish first.
pub async fn run(core: Arc<Core>, settings: RunnerSettings, mut shutdown: watch::Receiver<bool>) {
    let wake = core.timers_changed();
    tracing::info!(owner = %settings.owner, "timer runner started");
    // Batches being fired; while they fire, the next is claimed and read.
    let mut firing = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = core.now();
        let claimed = match core
            .store()
            .claim_due_timers(&settings.owner, now, settings.lease, settings.batch_size)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(error = %error, "cannot claim timers; retrying");
                Vec::new()
            }
        };
        let full_batch = claimed.len() as u64 == settings.batch_size;
        if !claimed.is_empty() {
            // The batch's states in a few reads, not one to five per timer; a failure only
            // costs the reads it would have saved.
            let engagements: Vec<EngagementName> = claimed
                .iter()
                .map(|timer| EngagementName::new(&timer.tenant, &timer.engagement))
                .collect();
            if let Err(error) = core.preload(&engagements).await {
                tracing::warn!(error = %error, "cannot read the states of the due timers' engagements together");
            }
            firing.spawn(fire_batch(Arc::clone(&core), settings.clone(), claimed));
        }
        if full_batch {
            // More are due: claim the next batch while this one fires.
            while firing.len() >= BATCHES_IN_FLIGHT {
                firing.join_next().await;
            }
            continue;
        }
        // What is due is claimed: let it fire before looking at the next timer (a claimed
        // timer's lease would otherwise count as the next one).
        while firing.join_next().await.is_some() {}
        let next = match core.store().next_timer_at(core.now()).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the next timer");
                None
            }
        };
        // Sleeps until the next timer is due on the service's clock (a testing clock moved
        // past it wakes the runner at once), at most `poll_interval`; never spins: a timer
        // due now that could not be fired waits for its lease.
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            () = wake.notified() => {}
            () = crate::clock::sleep_until(core.clock(), next, MIN_PAUSE, settings.poll_interval) => {}
        }
    }
    while firing.join_next().await.is_some() {}
    tracing::info!("timer runner stopped");
}

/// Fires a claimed batch, `settings.concurrency` timers at a time.
async fn fire_batch(core: Arc<Core>, settings: RunnerSettings, claimed: Vec<DueTimer>) {
    futures_util::stream::iter(claimed)
        .for_each_concurrent(settings.concurrency, |timer| fire(&core, &settings.owner, timer))
        .await;
}

#[tracing::instrument(skip_all, fields(engagement = %timer.engagement, timer = %timer.timer_id))]
async fn fire(core: &Core, owner: &str, timer: DueTimer) {
    let engagement = EngagementName::new(&timer.tenant, &timer.engagement);
    let mutation = Mutation {
        engagement,
        method: FIRE_TIMER,
        action: Action::FireTimer {
            timer: timer.timer_id.clone(),
        },
        expected_sequence: None,
        request_id: String::new(),
    };
    let service = Principal::service();
    let result = trace::in_new_trace("timer", core.execute(&service, mutation)).await;
    let lag = (core.now() - timer.fires_at).to_std().unwrap_or(Duration::ZERO);
    match result {
        // Fired: the commit removed the timer row. No events: the timer was already gone
        // from the engagement, so the row is stale.
        Ok(executed) if executed.events > 0 => {
            metrics::counter!(names::TIMERS_FIRED, "outcome" => "fired").increment(1);
            metrics::histogram!(names::TIMER_LAG).record(lag.as_secs_f64());
        }
        Ok(_) | Err(AppError::NotFound { .. }) => {
            metrics::counter!(names::TIMERS_FIRED, "outcome" => "gone").increment(1);
            if let Err(error) = core.store().delete_timer(&timer).await {
                tracing::warn!(error = %error, "cannot delete a stale timer");
            }
        }
        Err(error) => {
            metrics::counter!(names::TIMERS_FIRED, "outcome" => "failed").increment(1);
            // The claim stays until its lease runs out; then this or another replica retries.
            tracing::warn!(error = %error, owner, "timer did not fire; it is retried when its claim expires");
        }
    }
}
