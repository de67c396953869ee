//! The requests being fetched: one leader per key fetches, the others
//! wait for its answer (see the module docs of the cache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::CachedResponse;

type Answer = Option<Arc<CachedResponse>>;

/// The keys being fetched. A flight is registered by its leader and removed
/// when the leader finishes or is dropped ([`Leader`]'s `Drop`).
#[derive(Debug, Default)]
pub(super) struct Flights {
    map: Mutex<HashMap<String, Flight>>,
    next_id: AtomicU64,
}

/// One key being fetched.
#[derive(Debug)]
struct Flight {
    /// Tells the leader's registration apart from a later one of the key.
    id: u64,
    /// Becomes `Some` when the leader publishes; closed (sender dropped)
    /// when the leader goes without an answer.
    done: watch::Receiver<Answer>,
}

/// What a caller of `get_or_fetch` does for a key not in the store.
pub(super) enum Role<'a> {
    /// Fetch, and publish the answer to the waiters.
    Lead(Leader<'a>),
    /// Wait for the leader's answer.
    Wait(watch::Receiver<Answer>),
    /// Fetch without waiting or leading (waited through too many failures).
    Alone,
}

impl Flights {
    /// How many keys are being fetched.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Flight>> {
        // No code panics while holding the lock; if one did, the map is
        // still consistent (every change is a single insert or remove).
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the flight for `key` (if `may_wait`) or starts one.
    pub(super) fn join<'a>(&'a self, key: &'a str, may_wait: bool) -> Role<'a> {
        let mut map = self.lock();
        if let Some(flight) = map.get(key) {
            return if may_wait {
                Role::Wait(flight.done.clone())
            } else {
                Role::Alone
            };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), Flight { id, done: rx });
        Role::Lead(Leader {
            flights: self,
            key,
            id,
            done: tx,
        })
    }
}

/// A registered flight, owned by its leader. Dropping it unregisters the
/// flight and closes its channel: waiters that got no answer start over.
pub(super) struct Leader<'a> {
    flights: &'a Flights,
    key: &'a str,
    id: u64,
    done: watch::Sender<Answer>,
}

impl Leader<'_> {
    /// Hands `response` to the waiters (present and future, until dropped).
    pub(super) fn publish(&self, response: &CachedResponse) {
        self.done.send_replace(Some(Arc::new(response.clone())));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        if map.get(self.key).is_some_and(|flight| flight.id == self.id) {
            map.remove(self.key);
        }
        // `self.done` drops after this, closing the channel.
    }
}
