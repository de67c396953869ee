//! What an agent sees of time and chance: the event's creation instant plus
//! elapsed run time, and random numbers seeded from the event and the agent,
//! so that a run can be replayed and a backtest cannot peek at the future.

use std::time::{Duration, Instant};

use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// `wasi:clocks/wall-clock` reading `start` plus the time since the run began.
pub(crate) struct EventWallClock {
    start: Duration,
    began: Instant,
}

impl EventWallClock {
    pub(crate) fn new(created_at_unix_secs: i64, began: Instant) -> Self {
        // Instants before 1970 are not representable in WASI's wall clock.
        let start = Duration::from_secs(u64::try_from(created_at_unix_secs).unwrap_or(0));
        Self { start, began }
    }
}

impl HostWallClock for EventWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        self.start + self.began.elapsed()
    }
}

/// `wasi:clocks/monotonic-clock` counting nanoseconds from the run's start,
/// so that it reveals nothing about the host either.
pub(crate) struct RunMonotonicClock {
    began: Instant,
}

impl RunMonotonicClock {
    pub(crate) fn new(began: Instant) -> Self {
        Self { began }
    }
}

impl HostMonotonicClock for RunMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The seeds of one run's random streams, derived from the event and the
/// agent's content hash.
pub(crate) struct RunSeeds {
    digest: [u8; 32],
}

impl RunSeeds {
    pub(crate) fn new(event_id: &str, agent_hash: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"sooth-run-seed\0");
        hasher.update((event_id.len() as u64).to_le_bytes());
        hasher.update(event_id.as_bytes());
        hasher.update(agent_hash.as_bytes());
        Self {
            digest: hasher.finalize().into(),
        }
    }

    fn stream(&self, label: u8) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.digest);
        hasher.update([label]);
        hasher.finalize().into()
    }

    pub(crate) fn secure(&self) -> ChaCha12Rng {
        ChaCha12Rng::from_seed(self.stream(1))
    }

    pub(crate) fn insecure(&self) -> ChaCha12Rng {
        ChaCha12Rng::from_seed(self.stream(2))
    }

    pub(crate) fn insecure_seed(&self) -> u128 {
        let stream = self.stream(3);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&stream[..16]);
        u128::from_le_bytes(bytes)
    }
}
