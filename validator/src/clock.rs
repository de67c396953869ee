//! The clock the whole daemon reads.
//!
//! This module owns the notion of "now" for the validator: every part of the daemon that asks
//! what time it is, or waits for an instant (the next midnight's activation, an event's
//! creation, a resolution), goes through a [`Clock`]. Two implementations share the same code
//! paths:
//!
//! - [`SystemClock`]: real UTC time, for `sooth validator run`;
//! - [`SimulatedClock`]: time that only moves when the driver (a backtest, the demo, a test)
//!   calls [`SimulatedClock::advance_to`]; deterministic, with no real waiting.
//!
//! It must not touch storage, scheduling or the rules: it only tells time and wakes sleepers.
//! The sandbox's clock (what an agent sees: the event's creation instant) is the runner's and
//! is not this one.
//!
//! The daemon holds a clock as `Arc<dyn Clock>`; both implementations are also cheap to clone.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

/// The future returned by [`Clock::sleep_until`]: owns everything it needs, so it can be
/// spawned or kept in a `select!` independently of the clock it came from.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the daemon reads the time from and waits on.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// A future that completes once [`now`](Self::now) has reached `instant` (at once if it
    /// already has). Dropping the future cancels the wait.
    fn sleep_until(&self, instant: DateTime<Utc>) -> Sleep;

    /// A future that completes once `duration` has passed on this clock (a negative duration
    /// completes at once).
    fn sleep(&self, duration: TimeDelta) -> Sleep {
        self.sleep_until(self.now() + duration)
    }
}

/// Real UTC time: [`Utc::now`] and tokio's timers.
///
/// Waiting needs a tokio runtime with its time driver enabled (`#[tokio::main]` and
/// `#[tokio::test]` have it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Longest single timer a [`SystemClock`] sleep arms before it reads the wall clock again.
///
/// Tokio's timers run on the monotonic clock, while the daemon waits for wall-clock instants
/// (00:00 UTC). If the wall clock is stepped (NTP, a suspended VM) while a long timer runs, the
/// two drift apart; re-reading the wall clock at least this often bounds the error.
const SYSTEM_SLEEP_RECHECK: Duration = Duration::from_secs(30);

impl SystemClock {
    /// A real clock.
    #[must_use]
    pub fn new() -> Self {
        Self
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, instant: DateTime<Utc>) -> Sleep {
        Box::pin(async move {
            loop {
                let remaining = instant.signed_duration_since(Utc::now());
                // A negative remainder fails the conversion: the instant has passed.
                let Ok(remaining) = remaining.to_std() else {
                    return;
                };
                if remaining.is_zero() {
                    return;
                }
                tokio::time::sleep(remaining.min(SYSTEM_SLEEP_RECHECK)).await;
            }
        })
    }
}

/// Why a [`SimulatedClock`] refused to move.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClockError {
    /// Simulated time only moves forward: what was read as "now" must stay in the past.
    #[error("the simulated clock cannot go back from {now} to {requested}")]
    Backwards {
        /// The clock's current instant.
        now: DateTime<Utc>,
        /// The earlier instant asked for.
        requested: DateTime<Utc>,
    },
}

/// Time that moves only when told to.
///
/// [`advance_to`](Self::advance_to) sets the time and wakes, in order of their instants (ties
/// in the order they started waiting), every sleeper whose instant is reached. Nothing depends
/// on real time or on the machine's speed, so a run driven the same way is the same run.
///
/// A driver that wants each sleeper to observe `now()` equal to its own instant (rather than
/// the instant the clock was moved to) steps with
/// [`advance_to_next_wakeup`](Self::advance_to_next_wakeup) instead.
///
/// Clones share the same time and sleepers.
#[derive(Clone)]
pub struct SimulatedClock {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// The number of pending sleepers, published whenever it changes, so a driver can wait
    /// until the daemon's tasks are parked on the clock (see
    /// [`SimulatedClock::wait_for_sleepers`]).
    sleeper_count: watch::Sender<usize>,
}

struct State {
    now: DateTime<Utc>,
    /// Ordered by instant, then by a sequence number that makes each key unique and keeps
    /// sleepers with the same instant in the order they started waiting.
    sleepers: BTreeMap<(DateTime<Utc>, u64), oneshot::Sender<()>>,
    next_sequence: u64,
}

impl SimulatedClock {
    /// A simulated clock reading `start`, with nobody waiting.
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        let (sleeper_count, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    now: start,
                    sleepers: BTreeMap::new(),
                    next_sequence: 0,
                }),
                sleeper_count,
            }),
        }
    }

    /// Moves the clock to `instant` and wakes every sleeper whose instant is at or before it,
    /// earliest first. Returns how many were woken. Moving to the current instant wakes nobody
    /// new and is allowed.
    ///
    /// Waking only makes the sleepers' tasks runnable; the caller decides how long to let them
    /// run (for instance with [`wait_for_sleepers`](Self::wait_for_sleepers)) before moving on.
    ///
    /// # Errors
    ///
    /// [`ClockError::Backwards`] if `instant` is before the current instant; nothing changes.
    pub fn advance_to(&self, instant: DateTime<Utc>) -> Result<usize, ClockError> {
        let due = {
            let mut state = self.lock();
            if instant < state.now {
                return Err(ClockError::Backwards {
                    now: state.now,
                    requested: instant,
                });
            }
            state.now = instant;
            // Everything strictly before (instant, u64::MAX) is due; `split_off` keeps the rest.
            let not_due = match instant.checked_add_signed(TimeDelta::nanoseconds(1)) {
                Some(just_after) => state.sleepers.split_off(&(just_after, 0)),
                // At the end of chrono's calendar every sleeper is due.
                None => BTreeMap::new(),
            };
            let due = std::mem::replace(&mut state.sleepers, not_due);
            self.publish_count(&state);
            due
        };
        // Woken outside the lock so that a woken task that reads the clock never contends
        // with this call. BTreeMap iteration is in key order: earliest instant first.
        let woken = due.len();
        for (_, waker) in due {
            // A sleeper whose future was dropped removed itself; a send to one that is being
            // dropped right now fails harmlessly.
            let _ = waker.send(());
        }
        Ok(woken)
    }

    /// Moves the clock by `duration` (see [`advance_to`](Self::advance_to)).
    ///
    /// # Errors
    ///
    /// [`ClockError::Backwards`] for a negative duration.
    pub fn advance_by(&self, duration: TimeDelta) -> Result<usize, ClockError> {
        let target = self.now() + duration;
        self.advance_to(target)
    }

    /// The earliest instant a sleeper waits for, if anyone waits.
    #[must_use]
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.lock()
            .sleepers
            .first_key_value()
            .map(|(&(instant, _), _)| instant)
    }

    /// Moves the clock to the earliest sleeper's instant, if it is not after `limit`, waking
    /// the sleepers of that instant only; returns that instant. Returns `None`, and leaves the
    /// clock where it is, when nobody waits or the next wakeup is after `limit`.
    ///
    /// # Errors
    ///
    /// Never in practice (sleepers' instants are never in the past); typed for symmetry with
    /// [`advance_to`](Self::advance_to).
    pub fn advance_to_next_wakeup(
        &self,
        limit: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ClockError> {
        match self.next_wakeup() {
            Some(instant) if instant <= limit => {
                // A sleeper that registered after a concurrent `advance_to` may lie in the past;
                // never move backwards for it, just wake it.
                let target = instant.max(self.now());
                self.advance_to(target)?;
                Ok(Some(target))
            }
            _ => Ok(None),
        }
    }

    /// How many sleepers are waiting.
    #[must_use]
    pub fn pending_sleepers(&self) -> usize {
        self.lock().sleepers.len()
    }

    /// Waits (in real time) until at least `count` sleepers are waiting on the clock: the
    /// driver's way to know that the daemon's tasks have done what they could at this instant
    /// and parked.
    pub async fn wait_for_sleepers(&self, count: usize) {
        let mut receiver = self.shared.sleeper_count.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we hold `self`.
        let _ = receiver.wait_for(|&pending| pending >= count).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a plain instant and a map that no operation leaves half-changed, so a
        // panic elsewhere while holding the lock leaves it usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish_count(&self, state: &State) {
        self.shared.sleeper_count.send_replace(state.sleepers.len());
    }
}

impl fmt::Debug for SimulatedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimulatedClock")
            .field("now", &state.now)
            .field("pending_sleepers", &state.sleepers.len())
            .finish()
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    fn sleep_until(&self, instant: DateTime<Utc>) -> Sleep {
        let (waker, woken) = oneshot::channel();
        let key = {
            let mut state = self.lock();
            if instant <= state.now {
                return Box::pin(std::future::ready(()));
            }
            let key = (instant, state.next_sequence);
            state.next_sequence += 1;
            state.sleepers.insert(key, waker);
            self.publish_count(&state);
            key
        };
        let registration = Registration {
            clock: self.clone(),
            key,
        };
        Box::pin(async move {
            // Held across the wait: dropping the future unregisters the sleeper.
            let _registration = registration;
            // An error means the sender is gone, which only happens once it was sent or
            // removed; either way there is nothing more to wait for.
            let _ = woken.await;
        })
    }
}

/// Removes a sleeper from the clock when its future goes (woken or cancelled), so cancelled
/// waits neither leak nor count as pending.
struct Registration {
    clock: SimulatedClock,
    key: (DateTime<Utc>, u64),
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        if state.sleepers.remove(&self.key).is_some() {
            self.clock.publish_count(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;

    use std::sync::Mutex as StdMutex;

    #[test]
    fn simulated_time_moves_only_when_told() {
        let clock = SimulatedClock::new(at("2026-03-01T00:00:00Z"));
        assert_eq!(clock.now(), at("2026-03-01T00:00:00Z"));
        assert_eq!(clock.advance_to(at("2026-03-01T12:00:00Z")), Ok(0));
        assert_eq!(clock.now(), at("2026-03-01T12:00:00Z"));
        assert_eq!(clock.advance_by(TimeDelta::hours(1)), Ok(0));
        assert_eq!(clock.now(), at("2026-03-01T13:00:00Z"));
        // Standing still is fine; going back is refused and changes nothing.
        assert_eq!(clock.advance_to(at("2026-03-01T13:00:00Z")), Ok(0));
        assert_eq!(
            clock.advance_to(at("2026-03-01T00:00:00Z")),
            Err(ClockError::Backwards {
                now: at("2026-03-01T13:00:00Z"),
                requested: at("2026-03-01T00:00:00Z"),
            })
        );
        assert_eq!(clock.now(), at("2026-03-01T13:00:00Z"));
        // Clones share the time.
        let clone = clock.clone();
        clone.advance_by(TimeDelta::minutes(5)).unwrap();
        assert_eq!(clock.now(), at("2026-03-01T13:05:00Z"));
    }

    #[tokio::test]
    async fn sleepers_wake_when_their_instant_is_reached_in_order() {
        let clock = SimulatedClock::new(at("2026-03-01T00:00:00Z"));
        // (sleeper name, the clock's reading when it woke), in the order the sleepers ran.
        type WakeLog = Arc<StdMutex<Vec<(&'static str, DateTime<Utc>)>>>;
        let woken: WakeLog = Arc::default();
        // Registered out of order; "b1" and "b2" share an instant.
        let mut tasks = Vec::new();
        for (name, instant) in [
            ("c", "2026-03-01T03:00:00Z"),
            ("b1", "2026-03-01T02:00:00Z"),
            ("a", "2026-03-01T01:00:00Z"),
            ("b2", "2026-03-01T02:00:00Z"),
        ] {
            let sleep = clock.sleep_until(at(instant));
            let clock = clock.clone();
            let woken = Arc::clone(&woken);
            tasks.push(tokio::spawn(async move {
                sleep.await;
                woken.lock().unwrap().push((name, clock.now()));
            }));
        }
        assert_eq!(clock.pending_sleepers(), 4);
        assert_eq!(clock.next_wakeup(), Some(at("2026-03-01T01:00:00Z")));

        // Step one wakeup at a time: each sleeper sees its own instant as now.
        let limit = at("2026-03-01T02:30:00Z");
        let mut steps = Vec::new();
        while let Some(instant) = clock.advance_to_next_wakeup(limit).unwrap() {
            steps.push(instant);
            // Let the woken tasks run before the next step.
            let pending = clock.pending_sleepers();
            while woken.lock().unwrap().len() < 4 - pending {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(
            steps,
            [at("2026-03-01T01:00:00Z"), at("2026-03-01T02:00:00Z")]
        );
        // "c" is after the limit: still waiting, clock not moved past the last wakeup.
        assert_eq!(clock.now(), at("2026-03-01T02:00:00Z"));
        assert_eq!(clock.pending_sleepers(), 1);

        assert_eq!(clock.advance_to(at("2026-03-02T00:00:00Z")), Ok(1));
        for task in tasks {
            task.await.unwrap();
        }
        let woken = woken.lock().unwrap().clone();
        assert_eq!(woken[0], ("a", at("2026-03-01T01:00:00Z")));
        // b1 and b2 woke in the same step, so both saw 02:00 (their order of running is the
        // scheduler's; their order of waking is registration order).
        let mut middle: Vec<_> = woken[1..3].to_vec();
        middle.sort();
        assert_eq!(
            middle,
            [
                ("b1", at("2026-03-01T02:00:00Z")),
                ("b2", at("2026-03-01T02:00:00Z"))
            ]
        );
        assert_eq!(woken[3], ("c", at("2026-03-02T00:00:00Z")));
        assert_eq!(clock.pending_sleepers(), 0);
        assert_eq!(clock.next_wakeup(), None);
    }

    #[tokio::test]
    async fn one_advance_wakes_every_due_sleeper_and_no_other() {
        let clock = SimulatedClock::new(at("2026-03-01T00:00:00Z"));
        let early = clock.sleep_until(at("2026-03-01T01:00:00Z"));
        let exact = clock.sleep_until(at("2026-03-01T02:00:00Z"));
        let late = clock.sleep_until(at("2026-03-01T02:00:00.000000001Z"));
        // Reaching an instant exactly wakes its sleeper; one nanosecond short does not.
        assert_eq!(clock.advance_to(at("2026-03-01T02:00:00Z")), Ok(2));
        early.await;
        exact.await;
        assert_eq!(clock.pending_sleepers(), 1);
        let mut late = late;
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut late)
                .await
                .is_err()
        );
        assert_eq!(clock.advance_by(TimeDelta::nanoseconds(1)), Ok(1));
        late.await;
    }

    #[tokio::test]
    async fn past_instants_do_not_wait_and_cancelled_sleeps_unregister() {
        let clock = SimulatedClock::new(at("2026-03-01T00:00:00Z"));
        clock.sleep_until(at("2026-03-01T00:00:00Z")).await;
        clock.sleep_until(at("2020-01-01T00:00:00Z")).await;
        clock.sleep(TimeDelta::seconds(-5)).await;
        assert_eq!(clock.pending_sleepers(), 0);

        let cancelled = clock.sleep(TimeDelta::hours(1));
        assert_eq!(clock.pending_sleepers(), 1);
        drop(cancelled);
        assert_eq!(clock.pending_sleepers(), 0);
        assert_eq!(clock.advance_by(TimeDelta::hours(2)), Ok(0));
    }

    #[tokio::test]
    async fn a_driver_can_wait_until_tasks_park_on_the_clock() {
        let clock = SimulatedClock::new(at("2026-03-01T00:00:00Z"));
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        // A daemon-like loop: wake every hour, three times, through the trait object.
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                shared.sleep(TimeDelta::hours(1)).await;
                seen.push(shared.now());
            }
            seen
        });
        for _ in 0..3 {
            clock.wait_for_sleepers(1).await;
            clock.advance_by(TimeDelta::hours(1)).unwrap();
        }
        assert_eq!(
            task.await.unwrap(),
            [
                at("2026-03-01T01:00:00Z"),
                at("2026-03-01T02:00:00Z"),
                at("2026-03-01T03:00:00Z")
            ]
        );
    }

    #[tokio::test]
    async fn system_clock_reads_and_waits_on_real_time() {
        let clock = SystemClock::new();
        let before = Utc::now();
        let now = clock.now();
        assert!(now >= before && now - before < TimeDelta::seconds(5));

        // A past instant returns at once; a near one after at least its delay.
        clock.sleep_until(now - TimeDelta::hours(1)).await;
        let started = std::time::Instant::now();
        clock
            .sleep_until(Utc::now() + TimeDelta::milliseconds(60))
            .await;
        assert!(started.elapsed() >= Duration::from_millis(55));
        let started = std::time::Instant::now();
        clock.sleep(TimeDelta::milliseconds(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(25));
    }
}
