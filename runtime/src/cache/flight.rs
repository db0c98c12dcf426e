//! In-process single-flight: identical jobs running at once on one worker
//! run the handler once. The first becomes the leader; the others wait for
//! its result (the leader is bounded by its own wait and the job's
//! deadline), and try again only if it has none.

use super::key::EntryKey;
use super::memory::Cached;
use crate::locks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// One computation in progress.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    /// None while running; then the result (none: it failed).
    done: Mutex<Option<Option<Arc<Cached>>>>,
    ready: Condvar,
}

impl Flight {
    /// Wait until the leader finishes: its result, or none if it failed.
    pub fn wait_done(&self) -> Option<Arc<Cached>> {
        let mut done = lock(&self.done);
        loop {
            if let Some(result) = done.as_ref() {
                return result.clone();
            }
            done = self
                .ready
                .wait(done)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn finish(&self, result: Option<Arc<Cached>>) {
        let mut done = lock(&self.done);
        if done.is_none() {
            *done = Some(result);
            self.ready.notify_all();
        }
    }
}

/// Computations in progress by key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<EntryKey, Arc<Flight>>>,
}

/// What [`Flights::join`] made of the caller.
pub(crate) enum Role {
    /// Compute, then [`Leader::finish`].
    Leader(Leader),
    /// Wait for this flight.
    Follower(Arc<Flight>),
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: &EntryKey) -> Role {
        let mut running = lock(&self.running);
        if let Some(flight) = running.get(key) {
            return Role::Follower(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        running.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: Arc::clone(self),
            key: key.clone(),
            flight,
        })
    }
}

/// The leader of a flight. Dropping it without [`Leader::finish`] (an
/// error, a panic) releases the followers with no result.
#[derive(Debug)]
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: EntryKey,
    flight: Arc<Flight>,
}

impl Leader {
    pub fn finish(self, result: Option<Arc<Cached>>) {
        self.flight.finish(result);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.flight.finish(None);
        let mut running = lock(&self.flights.running);
        if running
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            running.remove(&self.key);
        }
    }
}
