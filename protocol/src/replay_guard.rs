//! The memory of an Epistula verifier: which `(hotkey, uuid)` pairs were
//! accepted within the window, bounded in size.
//!
//! Each pair is kept as a 16-byte digest (the first half of
//! `sha256(scheme || public key || lowercase uuid)`), beside the request's
//! timestamp, so a million entries take tens of megabytes. An entry is
//! forgotten once its timestamp is more than the window before the latest
//! clock reading seen; from then on the verifier refuses the request as
//! stale anyway, and the guard checks that itself so that callers whose
//! clocks differ a little cannot slip a forgotten request past it.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

use crate::hotkey::{Hotkey, HotkeyScheme};

type Key = [u8; 16];

/// What became of a request offered to the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Not seen within the window: now remembered.
    New,
    /// Already seen within the window.
    Seen,
    /// Not seen, but the guard is full.
    Full,
    /// Older than the window by the latest clock the guard has seen.
    Stale {
        /// How old, by that clock.
        age_ms: u64,
    },
}

pub(crate) struct ReplayGuard {
    max: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("max", &self.max)
            .field("remembered", &self.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    seen: HashSet<Key>,
    by_time: BTreeSet<(u64, Key)>,
    latest_now_ms: u64,
}

impl ReplayGuard {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().seen.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while the lock is held, and the state is
        // consistent between statements, so a poisoned lock is still good.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers the request of `hotkey` with `uuid` signed at `timestamp_ms`,
    /// at `now_ms`, with a window of `window_ms`.
    pub(crate) fn record(
        &self,
        hotkey: &Hotkey,
        uuid: &str,
        timestamp_ms: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Recorded {
        let key = digest(hotkey, uuid);
        let mut state = self.lock();
        state.latest_now_ms = state.latest_now_ms.max(now_ms);
        let horizon = state.latest_now_ms.saturating_sub(window_ms);
        while let Some(&(timestamp, old)) = state.by_time.first() {
            if timestamp >= horizon {
                break;
            }
            state.by_time.pop_first();
            state.seen.remove(&old);
        }
        if timestamp_ms < horizon {
            return Recorded::Stale {
                age_ms: state.latest_now_ms - timestamp_ms,
            };
        }
        if state.seen.contains(&key) {
            return Recorded::Seen;
        }
        if state.seen.len() >= self.max {
            return Recorded::Full;
        }
        state.seen.insert(key);
        state.by_time.insert((timestamp_ms, key));
        Recorded::New
    }
}

fn digest(hotkey: &Hotkey, uuid: &str) -> Key {
    let scheme: u8 = match hotkey.scheme() {
        HotkeyScheme::Ed25519 => 0,
        HotkeyScheme::Sr25519 => 1,
    };
    let hash = Sha256::new()
        .chain_update([scheme])
        .chain_update(hotkey.public_bytes())
        .chain_update(uuid.to_ascii_lowercase().as_bytes())
        .finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&hash[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotkey::SecretHotkey;

    const UUID: &str = "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b";

    fn hotkey(seed: u8) -> Hotkey {
        SecretHotkey::from_seed(HotkeyScheme::Ed25519, &[seed; 32]).public()
    }

    #[test]
    fn a_pair_is_refused_until_it_leaves_the_window() {
        let guard = ReplayGuard::new(10);
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_000, 100),
            Recorded::New
        );
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_050, 100),
            Recorded::Seen
        );
        // Another case of the same uuid is the same uuid.
        assert_eq!(
            guard.record(&hotkey(1), &UUID.to_uppercase(), 1_000, 1_050, 100),
            Recorded::Seen
        );
        // Another hotkey may use it.
        assert_eq!(
            guard.record(&hotkey(2), UUID, 1_000, 1_050, 100),
            Recorded::New
        );
        // At the window's edge it is still remembered.
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_100, 100),
            Recorded::Seen
        );
        assert_eq!(guard.len(), 2);
        // Past it, forgotten; a new request with the uuid is taken.
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_101, 1_101, 100),
            Recorded::New
        );
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn the_latest_clock_decides_what_is_stale() {
        let guard = ReplayGuard::new(10);
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_000, 100),
            Recorded::New
        );
        // Another caller's clock moved on and pruned the entry...
        assert_eq!(
            guard.record(&hotkey(2), UUID, 1_200, 1_200, 100),
            Recorded::New
        );
        // ...so a caller whose clock lags cannot have the old request taken.
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_050, 100),
            Recorded::Stale { age_ms: 200 }
        );
    }

    #[test]
    fn a_full_guard_takes_nothing_new_until_entries_expire() {
        let guard = ReplayGuard::new(2);
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_000, 100),
            Recorded::New
        );
        assert_eq!(
            guard.record(&hotkey(2), UUID, 1_010, 1_010, 100),
            Recorded::New
        );
        assert_eq!(
            guard.record(&hotkey(3), UUID, 1_020, 1_020, 100),
            Recorded::Full
        );
        // A replay is still a replay when full.
        assert_eq!(
            guard.record(&hotkey(1), UUID, 1_000, 1_020, 100),
            Recorded::Seen
        );
        assert_eq!(
            guard.record(&hotkey(3), UUID, 1_101, 1_101, 100),
            Recorded::New
        );
        assert_eq!(guard.len(), 2);
        assert_eq!(
            format!("{guard:?}"),
            "ReplayGuard { max: 2, remembered: 2 }"
        );
    }
}
