//! The ledger's books in memory: committed amounts per cap scope and the
//! open reservations. Every cap decision is made here, under one lock, so
//! that a reservation costs no database round trip; the journal then writes
//! what was decided to the file. No I/O here.
//!
//! Books of a shared ledger are *sliced*: besides the caps, each scope is
//! limited to what the database granted this gateway (its slice), and a
//! reservation that does not fit the slice is declined with the shortfall,
//! for the ledger to ask the database for more. They also count what is
//! reserved but not yet recorded in the database: up to the slice's
//! *margin* (what the database counts as spent beyond the records when it
//! takes a dead gateway's slice back), a reservation is recorded behind;
//! beyond it, the reservation must wait for its record.

use std::collections::HashMap;

use super::{BudgetScope, ReservationState};

/// Micro-dollars in one cap scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Scope {
    /// Open reservations.
    pub reserved: i64,
    /// Settled charges.
    pub charged: i64,
    /// The last reservation or closing in this scope (Unix milliseconds).
    pub touched_at_ms: i64,
    /// What this gateway's slice of the scope holds (sliced books only).
    pub granted: i64,
    /// Reserved and not yet recorded in the database (sliced books only).
    pub unrecorded: i64,
    /// How much may be unrecorded: what the database counts as spent
    /// beyond the records if it takes the slice back (sliced books only).
    pub margin: i64,
}

impl Scope {
    fn committed(&self) -> i64 {
        self.reserved.saturating_add(self.charged)
    }
}

/// An open reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Open {
    pub run_id: String,
    pub miner: String,
    pub service: String,
    pub day: String,
    pub reserved: i64,
    pub created_at_ms: i64,
}

/// An open reservation and the generation of the books that made it: one
/// made before the books were [`reset`](Books::reset) no longer counts in
/// their scopes.
#[derive(Debug, Clone)]
struct Held {
    open: Open,
    generation: u64,
}

/// How a reservation was closed, for the journal and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Closed {
    pub id: i64,
    pub open: Open,
    pub state: ReservationState,
    pub charged: i64,
    pub overrun: i64,
    pub estimated: bool,
    pub closed_at_ms: i64,
}

/// A reservation that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused {
    pub scope: BudgetScope,
    pub cap: i64,
    pub committed: i64,
}

/// What the database granted a run's and its miner-day's scopes, under
/// these caps, on the books of generation `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Grant {
    pub run_key: String,
    pub day_key: String,
    pub run: i64,
    pub day: i64,
    pub run_cap: i64,
    pub day_cap: i64,
    pub generation: u64,
}

/// What the database must grant before a reservation fits the slices
/// (micro-dollars; zero where the slice suffices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shortfall {
    pub run: i64,
    pub day: i64,
    /// The generation of the books it was computed on.
    pub generation: u64,
}

/// Why a reservation was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decline {
    /// It does not fit under a cap.
    Refused(Refused),
    /// It fits under the caps but not in this gateway's slices.
    Short(Shortfall),
}

/// Which kind of scope a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ScopeKind {
    /// `run_id\0service`
    Run,
    /// `miner\0day\0service`
    Day,
}

/// What a sliced scope holds beyond its committed amount, handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Surplus {
    pub kind: ScopeKind,
    pub key: String,
    pub micros: i64,
}

/// The books. Scope keys join their parts with a NUL, which the ledger
/// refuses inside any part, so distinct scopes never share a key.
#[derive(Debug, Default)]
pub(super) struct Books {
    next_id: i64,
    /// When idle runs were last forgotten (Unix milliseconds).
    swept_at_ms: i64,
    runs: HashMap<String, Scope>,
    days: HashMap<String, Scope>,
    open: HashMap<i64, Held>,
    /// Whether the scopes are limited to their slices.
    sliced: bool,
    /// Bumped by every reset.
    generation: u64,
    /// The shared ledger's instance whose slices these are (0 for a file's).
    owner: i64,
}

/// How many reservation ids each instance of a shared ledger has: its ids
/// are its number times this plus a count.
pub(super) const IDS_PER_INSTANCE: i64 = 1 << 40;

/// A slice's margin is its scope's cap divided by this, as the database
/// computes it (`gateway_grant`).
pub(super) const MARGIN_DIVISOR: i64 = 32;

/// A reservation made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reserved {
    pub id: i64,
    /// The generation of the books that made it.
    pub generation: u64,
    /// Whether it must be recorded before it is used: it would take a
    /// scope's unrecorded amount past the slice's margin.
    pub record_first: bool,
}

pub(super) fn run_key(run_id: &str, service: &str) -> String {
    format!("{run_id}\0{service}")
}

pub(super) fn day_key(miner: &str, day: &str, service: &str) -> String {
    format!("{miner}\0{day}\0{service}")
}

impl Books {
    /// Books that continue a file whose largest reservation id is `last_id`.
    pub fn new(last_id: i64) -> Self {
        Self {
            next_id: last_id.saturating_add(1),
            ..Self::default()
        }
    }

    /// Loads a run scope read from the file.
    pub fn load_run(&mut self, key: String, scope: Scope) {
        self.runs.insert(key, scope);
    }

    /// Loads a day scope read from the file, unless it is known already.
    pub fn load_day(&mut self, key: String, scope: Scope) {
        self.days.entry(key).or_insert(scope);
    }

    /// Books of shared-ledger instance `owner`: every scope starts with an
    /// empty slice, ids with the instance's.
    pub fn sliced(owner: i64) -> Self {
        Self {
            next_id: owner.saturating_mul(IDS_PER_INSTANCE),
            sliced: true,
            owner,
            ..Self::default()
        }
    }

    /// Starts over as instance `owner`, for a shared ledger whose slices
    /// were taken back (its lease ran out): empty scopes, the new
    /// instance's ids. Reservations still open stay closable but count in
    /// no scope any more: what they hold was counted when the slices were
    /// taken back.
    pub fn reset(&mut self, owner: i64) {
        self.generation += 1;
        self.owner = owner;
        self.next_id = owner.saturating_mul(IDS_PER_INSTANCE);
        self.runs.clear();
        self.days.clear();
    }

    /// The shared-ledger instance whose slices these are.
    pub fn owner(&self) -> i64 {
        self.owner
    }

    /// What the database must grant before `open` fits this gateway's
    /// slices; `None` when it fits (or the books are not sliced).
    pub fn shortfall(&self, open: &Open) -> Option<Shortfall> {
        if !self.sliced {
            return None;
        }
        let short = |scope: Option<&Scope>| {
            let scope = scope.copied().unwrap_or_default();
            (scope.committed().saturating_add(open.reserved) - scope.granted).max(0)
        };
        let shortfall = Shortfall {
            run: short(self.runs.get(&run_key(&open.run_id, &open.service))),
            day: short(
                self.days
                    .get(&day_key(&open.miner, &open.day, &open.service)),
            ),
            generation: self.generation,
        };
        (shortfall.run > 0 || shortfall.day > 0).then_some(shortfall)
    }

    /// Loads an open reservation read from the file.
    pub fn load_open(&mut self, id: i64, open: Open) {
        let generation = self.generation;
        self.open.insert(id, Held { open, generation });
    }

    /// Whether the day scope `key` is in memory.
    pub fn has_day(&self, key: &str) -> bool {
        self.days.contains_key(key)
    }

    /// Reserves `open.reserved` if it fits under both caps (and, sliced,
    /// in both slices); the new id.
    pub fn reserve(&mut self, open: Open, run_cap: i64, day_cap: i64) -> Result<Reserved, Decline> {
        let run_key = run_key(&open.run_id, &open.service);
        let day_key = day_key(&open.miner, &open.day, &open.service);
        let run = self.runs.get(&run_key).copied().unwrap_or_default();
        let day = self.days.get(&day_key).copied().unwrap_or_default();
        if run.committed().saturating_add(open.reserved) > run_cap {
            return Err(Decline::Refused(Refused {
                scope: BudgetScope::Run,
                cap: run_cap,
                committed: run.committed(),
            }));
        }
        if day.committed().saturating_add(open.reserved) > day_cap {
            return Err(Decline::Refused(Refused {
                scope: BudgetScope::MinerDay,
                cap: day_cap,
                committed: day.committed(),
            }));
        }
        if let Some(shortfall) = self.shortfall(&open) {
            return Err(Decline::Short(shortfall));
        }
        let beyond_margin =
            |scope: &Scope| scope.unrecorded.saturating_add(open.reserved) > scope.margin;
        let record_first = self.sliced && (beyond_margin(&run) || beyond_margin(&day));
        for scope in [
            self.runs.entry(run_key).or_default(),
            self.days.entry(day_key).or_default(),
        ] {
            scope.reserved = scope.reserved.saturating_add(open.reserved);
            if self.sliced {
                scope.unrecorded = scope.unrecorded.saturating_add(open.reserved);
            }
            scope.touched_at_ms = open.created_at_ms;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.load_open(id, open);
        Ok(Reserved {
            id,
            generation: self.generation,
            record_first,
        })
    }

    /// `open`, made by generation `generation` of the books, is recorded
    /// in the database now (or, when `recorded` is false, never will be):
    /// it no longer counts as unrecorded.
    pub fn recorded(&mut self, open: &Open, generation: u64) {
        if !self.sliced || generation != self.generation {
            return;
        }
        for scope in [
            self.runs.get_mut(&run_key(&open.run_id, &open.service)),
            self.days
                .get_mut(&day_key(&open.miner, &open.day, &open.service)),
        ]
        .into_iter()
        .flatten()
        {
            scope.unrecorded = scope.unrecorded.saturating_sub(open.reserved).max(0);
        }
    }

    /// Adds what the database granted to the slices of a run's and its
    /// miner-day's scopes, unless the books were reset since the shortfall
    /// was computed (the grant then went to slices taken back already).
    pub fn add_granted(&mut self, grant: Grant) {
        if grant.generation != self.generation {
            return;
        }
        for (scope, granted, cap) in [
            (
                self.runs.entry(grant.run_key).or_default(),
                grant.run,
                grant.run_cap,
            ),
            (
                self.days.entry(grant.day_key).or_default(),
                grant.day,
                grant.day_cap,
            ),
        ] {
            scope.granted += granted;
            // As the database keeps it: the largest of the grants' margins.
            if granted > 0 {
                scope.margin = scope.margin.max(cap / MARGIN_DIVISOR);
            }
        }
    }

    /// What a scope's slice holds beyond what is committed in it.
    pub fn unused(&self, kind: ScopeKind, key: &str) -> i64 {
        let scopes = match kind {
            ScopeKind::Run => &self.runs,
            ScopeKind::Day => &self.days,
        };
        scopes
            .get(key)
            .map_or(0, |scope| (scope.granted - scope.committed()).max(0))
    }

    /// Shrinks the slices of the scopes untouched since `cutoff_ms` to what
    /// is committed in them; what they held beyond it, to hand back.
    pub fn take_idle_surplus(&mut self, cutoff_ms: i64) -> Vec<Surplus> {
        let mut surplus = Vec::new();
        for (kind, scopes) in [
            (ScopeKind::Run, &mut self.runs),
            (ScopeKind::Day, &mut self.days),
        ] {
            for (key, scope) in scopes.iter_mut() {
                let unused = scope.granted - scope.committed();
                if unused > 0 && scope.touched_at_ms <= cutoff_ms {
                    scope.granted -= unused;
                    surplus.push(Surplus {
                        kind,
                        key: key.clone(),
                        micros: unused,
                    });
                }
            }
        }
        surplus
    }

    /// Closes open reservation `id`: settled with a charge of `actual`
    /// (at most the reservation), or dropped (`released`, `stale`) with
    /// none. `None` if it is not open.
    pub fn close(
        &mut self,
        id: i64,
        state: ReservationState,
        actual: i64,
        estimated: bool,
        now_ms: i64,
    ) -> Option<Closed> {
        let Held { open, generation } = self.open.remove(&id)?;
        let (charged, overrun) = if state == ReservationState::Settled {
            (
                actual.min(open.reserved),
                actual.saturating_sub(open.reserved).max(0),
            )
        } else {
            (0, 0)
        };
        if generation == self.generation {
            for scope in [
                self.runs
                    .entry(run_key(&open.run_id, &open.service))
                    .or_default(),
                self.days
                    .entry(day_key(&open.miner, &open.day, &open.service))
                    .or_default(),
            ] {
                scope.reserved = scope.reserved.saturating_sub(open.reserved);
                scope.charged = scope.charged.saturating_add(charged);
                scope.touched_at_ms = now_ms;
            }
        }
        Some(Closed {
            id,
            open,
            state,
            charged,
            overrun,
            estimated: estimated && state == ReservationState::Settled,
            closed_at_ms: now_ms,
        })
    }

    /// The open reservations made at or before `cutoff_ms`.
    pub fn open_since_before(&self, cutoff_ms: i64) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, held)| held.open.created_at_ms <= cutoff_ms)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Forgets the run scopes untouched since `cutoff_ms` with nothing
    /// open and nothing left in their slice (their runs' tokens have
    /// expired, see the module docs of the ledger); returns how many.
    pub fn forget_idle_runs(&mut self, cutoff_ms: i64) -> usize {
        let before = self.runs.len();
        self.runs.retain(|_, scope| {
            scope.touched_at_ms > cutoff_ms
                || scope.reserved != 0
                || scope.granted > scope.committed()
        });
        before - self.runs.len()
    }

    /// [`forget_idle_runs`](Self::forget_idle_runs) older than `memory_ms`,
    /// at most once a minute.
    pub fn forget_idle_runs_now_and_then(&mut self, now_ms: i64, memory_ms: i64) {
        if now_ms.saturating_sub(self.swept_at_ms) >= 60_000 {
            self.swept_at_ms = now_ms;
            self.forget_idle_runs(now_ms.saturating_sub(memory_ms));
        }
    }

    /// Every scope in memory, for comparison with the file: runs, then days.
    pub fn scopes(&self) -> (&HashMap<String, Scope>, &HashMap<String, Scope>) {
        (&self.runs, &self.days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(run: &str, amount: i64, at: i64) -> Open {
        Open {
            run_id: run.into(),
            miner: "m".into(),
            service: "s".into(),
            day: "2026-11-21".into(),
            reserved: amount,
            created_at_ms: at,
        }
    }

    #[test]
    fn caps_count_open_and_charged_amounts() {
        let mut books = Books::new(41);
        let a = books.reserve(open("r", 600, 1), 1000, 5000).unwrap().id;
        assert_eq!(a, 42, "ids continue the file's");
        let refused = books.reserve(open("r", 401, 2), 1000, 5000).unwrap_err();
        assert_eq!(
            refused,
            Decline::Refused(Refused {
                scope: BudgetScope::Run,
                cap: 1000,
                committed: 600
            })
        );
        // Settling 250 of 600 frees 350: 250 + 401 fits now.
        let closed = books
            .close(a, ReservationState::Settled, 250, false, 3)
            .unwrap();
        assert_eq!((closed.charged, closed.overrun), (250, 0));
        books.reserve(open("r", 401, 4), 1000, 5000).unwrap();
        // The day scope saw both runs' amounts: 250 + 401 + 4000 > 4600.
        let refused = books
            .reserve(open("other", 4000, 5), 4000, 4600)
            .unwrap_err();
        assert_eq!(
            refused,
            Decline::Refused(Refused {
                scope: BudgetScope::MinerDay,
                cap: 4600,
                committed: 651
            })
        );
    }

    #[test]
    fn an_overrun_is_recorded_not_charged_and_closing_twice_fails() {
        let mut books = Books::new(0);
        let id = books.reserve(open("r", 100, 1), 1000, 1000).unwrap().id;
        let closed = books
            .close(id, ReservationState::Settled, 130, true, 2)
            .unwrap();
        assert_eq!((closed.charged, closed.overrun), (100, 30));
        assert!(
            books
                .close(id, ReservationState::Released, 0, false, 3)
                .is_none()
        );
        let (runs, _) = books.scopes();
        assert_eq!(runs[&run_key("r", "s")].committed(), 100);
    }

    #[test]
    fn idle_runs_are_forgotten_unless_something_is_open() {
        let mut books = Books::new(0);
        let done = books.reserve(open("done", 10, 1), 100, 100).unwrap().id;
        books.close(done, ReservationState::Settled, 10, false, 2);
        books.reserve(open("busy", 10, 1), 100, 100).unwrap();
        assert_eq!(books.forget_idle_runs(5), 1);
        let (runs, days) = books.scopes();
        assert!(runs.contains_key(&run_key("busy", "s")));
        assert_eq!(days.len(), 1, "days are kept");
        assert_eq!(books.open_since_before(1), vec![2]);
    }

    #[test]
    fn sliced_books_decline_beyond_their_slices_and_hand_back_idle_surplus() {
        let mut books = Books::sliced(7);
        let short = books.reserve(open("r", 300, 1), 1000, 6400).unwrap_err();
        assert_eq!(
            short,
            Decline::Short(Shortfall {
                run: 300,
                day: 300,
                generation: 0
            })
        );
        let (run, day) = (run_key("r", "s"), day_key("m", "2026-11-21", "s"));
        let grant = |run_granted, day_granted, generation| Grant {
            run_key: run.clone(),
            day_key: day.clone(),
            run: run_granted,
            day: day_granted,
            run_cap: 1000,
            day_cap: 6400,
            generation,
        };
        books.add_granted(grant(400, 2000, 0));
        // Margins: 1000 / 32 = 31 and 6400 / 32 = 200. 300 is past both.
        let first = books.reserve(open("r", 300, 1), 1000, 6400).unwrap();
        assert_eq!(first.id, 7 << 40, "ids start where the instance's do");
        assert!(first.record_first);
        books.recorded(&open("r", 300, 1), first.generation);
        // 20 fits the run's margin of 31 unrecorded; 20 more does not.
        let small = books.reserve(open("r", 20, 1), 1000, 6400).unwrap();
        assert!(!small.record_first);
        assert!(
            books
                .reserve(open("r", 20, 1), 1000, 6400)
                .unwrap()
                .record_first
        );
        // 340 + 100 > the run's slice of 400: short by 40 on the run only.
        let short = books.reserve(open("r", 100, 2), 1000, 6400).unwrap_err();
        assert!(matches!(short, Decline::Short(s) if (s.run, s.day) == (40, 0)));
        // A cap still refuses before any slice is asked for.
        let refused = books.reserve(open("r", 800, 2), 1000, 6400).unwrap_err();
        assert!(matches!(refused, Decline::Refused(r) if r.scope == BudgetScope::Run));
        assert_eq!(books.unused(ScopeKind::Day, &day), 1660);
        books.close(first.id, ReservationState::Settled, 120, false, 3);
        books.close(small.id, ReservationState::Released, 0, false, 3);
        books.close(small.id + 1, ReservationState::Released, 0, false, 3);
        // Untouched since 3: both slices shrink to the 120 charged.
        let mut surplus = books.take_idle_surplus(3);
        surplus.sort_by_key(|s| s.micros);
        assert_eq!(
            surplus,
            vec![
                Surplus {
                    kind: ScopeKind::Run,
                    key: run.clone(),
                    micros: 280
                },
                Surplus {
                    kind: ScopeKind::Day,
                    key: day.clone(),
                    micros: 1880
                },
            ]
        );
        assert!(books.take_idle_surplus(3).is_empty());
        // A grant computed before a reset is not added after it, and an
        // old reservation closes without touching the new scopes.
        let old = books.reserve(open("q", 0, 4), 1000, 6400).unwrap().id;
        books.reset(8);
        books.add_granted(grant(500, 500, 0));
        assert_eq!(books.unused(ScopeKind::Run, &run), 0);
        assert!(
            books
                .close(old, ReservationState::Released, 0, false, 5)
                .is_some()
        );
        assert!(books.scopes().0.is_empty());
    }
}
