//! The states of engagements this replica committed last, so that the next command on one
//! decides without reading it back. Never trusted blindly: a command's commit is guarded
//! by the sequence the state is at, so a state another replica has moved past fails its
//! commit and is read again; a read checks the stored sequence first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use coachflow_engine::EngagementState;

/// A state as committed, with the engagement's creation time.
#[derive(Debug, Clone)]
pub struct CachedState {
    pub state: Arc<EngagementState>,
    pub created_at: DateTime<Utc>,
}

type Key = (String, String);

/// At most `capacity` states; the one stored longest ago goes first.
#[derive(Debug)]
pub struct StateCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<Key, CachedState>,
    /// Keys in the order they were stored; a key stored again appears twice, and only its
    /// last appearance counts (`states` holds its generation).
    order: VecDeque<(Key, u64)>,
    generations: HashMap<Key, u64>,
    next_generation: u64,
}

impl StateCache {
    pub fn new(capacity: usize) -> StateCache {
        StateCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether it keeps anything (its capacity is not 0).
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn get(&self, tenant: &str, id: &str) -> Option<CachedState> {
        if self.capacity == 0 {
            return None;
        }
        let inner = self.lock();
        inner.states.get(&(tenant.to_owned(), id.to_owned())).cloned()
    }

    /// Stores the state an engagement was committed at.
    pub fn put(&self, tenant: &str, id: &str, cached: CachedState) {
        if self.capacity == 0 {
            return;
        }
        let key = (tenant.to_owned(), id.to_owned());
        let mut inner = self.lock();
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.generations.insert(key.clone(), generation);
        inner.states.insert(key.clone(), cached);
        inner.order.push_back((key, generation));
        while inner.states.len() > self.capacity {
            let Some((oldest, generation)) = inner.order.pop_front() else {
                break;
            };
            if inner.generations.get(&oldest) == Some(&generation) {
                inner.generations.remove(&oldest);
                inner.states.remove(&oldest);
            }
        }
        // Engagements stored again leave stale entries behind: drop them now and then
        // (amortized: the queue at least halves).
        if inner.order.len() > 2 * self.capacity {
            let Inner { order, generations, .. } = &mut *inner;
            order.retain(|(key, generation)| generations.get(key) == Some(generation));
        }
    }

    /// Forgets an engagement (its commit lost a race: the stored state is newer).
    pub fn remove(&self, tenant: &str, id: &str) {
        let key = (tenant.to_owned(), id.to_owned());
        let mut inner = self.lock();
        inner.states.remove(&key);
        inner.generations.remove(&key);
    }

    pub fn len(&self) -> usize {
        self.lock().states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sequence: u64) -> CachedState {
        let state = EngagementState {
            sequence,
            ..EngagementState::default()
        };
        CachedState {
            state: Arc::new(state),
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn keeps_the_last_state_stored() {
        let cache = StateCache::new(4);
        cache.put("acme", "e1", at(1));
        cache.put("acme", "e1", at(2));
        assert_eq!(cache.get("acme", "e1").map(|hit| hit.state.sequence), Some(2));
        assert!(cache.get("globex", "e1").is_none());
        cache.remove("acme", "e1");
        assert!(cache.get("acme", "e1").is_none());
    }

    #[test]
    fn the_oldest_goes_first_and_the_size_stays_bounded() {
        let cache = StateCache::new(3);
        for n in 0..3 {
            cache.put("acme", &format!("e{n}"), at(1));
        }
        // e0 stored again: now e1 is the oldest.
        cache.put("acme", "e0", at(2));
        cache.put("acme", "e3", at(1));
        assert_eq!(cache.len(), 3);
        assert!(cache.get("acme", "e1").is_none());
        assert!(cache.get("acme", "e0").is_some());
        // Storing one engagement again and again does not grow the queue without bound.
        for sequence in 0..100 {
            cache.put("acme", "e0", at(sequence));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.lock().order.len() <= 6);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let cache = StateCache::new(0);
        cache.put("acme", "e1", at(1));
        assert!(cache.get("acme", "e1").is_none());
    }
}
