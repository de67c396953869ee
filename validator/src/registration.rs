//! Registration slots, immunity and deregistration.
//!
//! This module owns the decision of what happens when a miner registers. SPEC, "registration":
//! "a fixed number of slots (default 256); a new miner has 7 days of immunity; when a miner
//! registers and the slots are full, the lowest-ranked miner outside immunity is deregistered".
//!
//! It only decides: it returns a [`RegistrationDecision`] naming the new miner and the miner it
//! replaces, and the daemon records both (the deregistered miner's history stays, its runs
//! stop). Slots are uids `0..slots`; a replacement takes over the uid it frees.
//!
//! "Lowest-ranked" is the last place in the [`crate::scoring::leaderboard`] order, so it
//! follows the same rules: worst mean Brier; a miner without a mean (before any event
//! resolved) below everyone with one; among equals, the most recent registration (the reverse
//! of "ties go to the miner registered earlier"), then the higher uid.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scoring::{LeaderboardRow, Miner};

/// SPEC: "a fixed number of slots (default 256)".
pub const DEFAULT_SLOTS: u16 = 256;

/// SPEC: "a new miner has 7 days of immunity".
pub const DEFAULT_IMMUNITY: TimeDelta = TimeDelta::days(7);

/// The configurable registration rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationRules {
    /// Number of slots, i.e. of miners registered at once; uids run `0..slots`.
    pub slots: u16,
    /// How long after registering a miner cannot be deregistered.
    pub immunity: TimeDelta,
}

impl Default for RegistrationRules {
    fn default() -> Self {
        Self {
            slots: DEFAULT_SLOTS,
            immunity: DEFAULT_IMMUNITY,
        }
    }
}

impl RegistrationRules {
    /// Whether `miner` is immune from deregistration at `at`.
    ///
    /// Immunity covers `[registered_at, registered_at + immunity)`: at exactly 7 days it has
    /// ended, so "7 days of immunity" means 7 full days and not a second more.
    #[must_use]
    pub fn is_immune(&self, miner: &Miner, at: DateTime<Utc>) -> bool {
        at.signed_duration_since(miner.registered_at) < self.immunity
    }
}

/// What a registration does; the daemon records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationDecision {
    /// The new miner, with its uid and registration instant.
    pub registered: Miner,
    /// The miner deregistered to make room, if the slots were full. Its uid is the new
    /// miner's.
    pub deregistered: Option<Miner>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistrationError {
    /// The rules allow no slot at all.
    #[error("registration is closed: the number of slots is 0")]
    NoSlots,
    /// The hotkey already holds a slot.
    #[error("hotkey {hotkey} is already registered as uid {uid}")]
    AlreadyRegistered {
        /// The hotkey.
        hotkey: String,
        /// The slot it holds.
        uid: u16,
    },
    /// The slots are full and every registered miner is still immune.
    #[error(
        "all slots are full and every miner is immune; the next slot can open at {next_opening}"
    )]
    AllImmune {
        /// When the first current miner's immunity ends.
        next_opening: DateTime<Utc>,
    },
}

/// Decides the registration of `hotkey` at `at`.
///
/// `standings` is the current leaderboard: one row per registered miner, as returned by
/// [`crate::scoring::leaderboard`] computed at `at`. If a slot is free the new miner takes the
/// lowest free uid; otherwise the lowest-ranked (largest `rank`) miner outside immunity is
/// deregistered and the new miner takes its uid.
///
/// # Errors
///
/// - [`RegistrationError::NoSlots`] if `rules.slots` is 0;
/// - [`RegistrationError::AlreadyRegistered`] if `hotkey` already holds a slot;
/// - [`RegistrationError::AllImmune`] if the slots are full and every miner is immune.
pub fn decide_registration(
    rules: &RegistrationRules,
    standings: &[LeaderboardRow],
    hotkey: &str,
    at: DateTime<Utc>,
) -> Result<RegistrationDecision, RegistrationError> {
    if rules.slots == 0 {
        return Err(RegistrationError::NoSlots);
    }
    if let Some(existing) = standings.iter().find(|row| row.miner.hotkey == hotkey) {
        return Err(RegistrationError::AlreadyRegistered {
            hotkey: hotkey.to_owned(),
            uid: existing.miner.uid,
        });
    }
    let new_miner = |uid| Miner {
        uid,
        hotkey: hotkey.to_owned(),
        registered_at: at,
    };

    if let Some(uid) = lowest_free_uid(rules.slots, standings) {
        return Ok(RegistrationDecision {
            registered: new_miner(uid),
            deregistered: None,
        });
    }

    let lowest_ranked = standings
        .iter()
        .filter(|row| !rules.is_immune(&row.miner, at))
        .max_by_key(|row| row.rank);
    match lowest_ranked {
        Some(row) => Ok(RegistrationDecision {
            registered: new_miner(row.miner.uid),
            deregistered: Some(row.miner.clone()),
        }),
        None => {
            // Full slots imply at least one miner, so there is an earliest registration.
            let next_opening = standings
                .iter()
                .map(|row| row.miner.registered_at + rules.immunity)
                .min()
                .unwrap_or(at);
            Err(RegistrationError::AllImmune { next_opening })
        }
    }
}

/// The lowest uid in `0..slots` nobody holds, if any.
fn lowest_free_uid(slots: u16, standings: &[LeaderboardRow]) -> Option<u16> {
    let mut taken = vec![false; usize::from(slots)];
    for row in standings {
        if let Some(slot) = taken.get_mut(usize::from(row.miner.uid)) {
            *slot = true;
        }
    }
    let free = taken.iter().position(|&is_taken| !is_taken)?;
    u16::try_from(free).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{Outcome, ResolvedEvent, leaderboard};
    use crate::test_support::at;

    fn miner(uid: u16, hotkey: &str, registered_at: &str) -> Miner {
        Miner {
            uid,
            hotkey: hotkey.to_owned(),
            registered_at: at(registered_at),
        }
    }

    /// Standings from one resolved Yes event on which each miner predicted `prediction`:
    /// a higher prediction ranks better.
    fn standings(entries: &[(Miner, Option<f64>)]) -> Vec<LeaderboardRow> {
        let miners: Vec<Miner> = entries.iter().map(|(m, _)| m.clone()).collect();
        let event = ResolvedEvent {
            id: "e".to_owned(),
            created_at: at("2026-01-01T00:00:00Z"),
            resolved_at: at("2026-01-04T00:00:00Z"),
            outcome: Outcome::Yes,
            predictions: entries.iter().map(|(_, p)| *p).collect(),
        };
        leaderboard(&miners, &[event]).unwrap()
    }

    fn three_slots() -> RegistrationRules {
        RegistrationRules {
            slots: 3,
            ..RegistrationRules::default()
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let rules = RegistrationRules::default();
        assert_eq!(rules.slots, 256);
        assert_eq!(rules.immunity, TimeDelta::days(7));
    }

    #[test]
    fn a_free_slot_is_taken_without_deregistering() {
        // uids 0 and 2 taken out of 3: the newcomer gets uid 1.
        let rows = standings(&[
            (miner(0, "a", "2026-01-01T00:00:00Z"), Some(0.9)),
            (miner(2, "c", "2026-01-01T00:00:00Z"), Some(0.9)),
        ]);
        let decision =
            decide_registration(&three_slots(), &rows, "new", at("2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(decision.registered, miner(1, "new", "2026-01-02T00:00:00Z"));
        assert_eq!(decision.deregistered, None);
    }

    #[test]
    fn full_slots_deregister_the_lowest_ranked_miner_outside_immunity() {
        // On the Yes event: "worst" said 0.1 (Brier 0.81) but registered on 10 Jan, so on
        // 15 Jan it is immune; "weak" said 0.4 (Brier 0.36) and is outside immunity; "best"
        // said 0.9 (Brier 0.01). "weak" goes and "new" takes its uid 1.
        let rows = standings(&[
            (miner(0, "best", "2026-01-01T00:00:00Z"), Some(0.9)),
            (miner(1, "weak", "2026-01-01T00:00:00Z"), Some(0.4)),
            (miner(2, "worst", "2026-01-10T00:00:00Z"), Some(0.1)),
        ]);
        let decision =
            decide_registration(&three_slots(), &rows, "new", at("2026-01-15T00:00:00Z")).unwrap();
        assert_eq!(
            decision.deregistered,
            Some(miner(1, "weak", "2026-01-01T00:00:00Z"))
        );
        assert_eq!(decision.registered, miner(1, "new", "2026-01-15T00:00:00Z"));
    }

    #[test]
    fn immunity_ends_at_exactly_seven_days() {
        let rules = three_slots();
        let a = miner(0, "a", "2026-01-01T00:00:00Z");
        assert!(rules.is_immune(&a, at("2026-01-01T00:00:00Z")));
        assert!(rules.is_immune(&a, at("2026-01-07T23:59:59Z")));
        assert!(!rules.is_immune(&a, at("2026-01-08T00:00:00Z")));

        // Ranks by the Yes event: a (0.9) 1st, b (0.8) 2nd, c (0.7) 3rd. a and b registered on
        // 1 Jan, c on 2 Jan.
        let rows = standings(&[
            (a, Some(0.9)),
            (miner(1, "b", "2026-01-01T00:00:00Z"), Some(0.8)),
            (miner(2, "c", "2026-01-02T00:00:00Z"), Some(0.7)),
        ]);
        // One second before 7 days: all immune; the first opening is a's and b's 8 Jan 00:00.
        assert_eq!(
            decide_registration(&rules, &rows, "new", at("2026-01-07T23:59:59Z")),
            Err(RegistrationError::AllImmune {
                next_opening: at("2026-01-08T00:00:00Z")
            })
        );
        // At exactly 7 days a and b are exposed, c (6 days) is not: b, the lower of the two, goes.
        let decision =
            decide_registration(&rules, &rows, "new", at("2026-01-08T00:00:00Z")).unwrap();
        assert_eq!(
            decision.deregistered.map(|m| m.hotkey),
            Some("b".to_owned())
        );
        // A day later c is exposed too, and it is the lowest-ranked of all.
        let decision =
            decide_registration(&rules, &rows, "new", at("2026-01-09T00:00:00Z")).unwrap();
        assert_eq!(
            decision.deregistered.map(|m| m.hotkey),
            Some("c".to_owned())
        );
    }

    #[test]
    fn among_equals_the_most_recent_registration_goes() {
        // No event has resolved: nobody has a mean, so the leaderboard orders by registration
        // and the most recent registration ("late", 5 Jan) is the lowest-ranked. Equal means
        // (both imputed 0.25 here) give the same answer.
        let rules = RegistrationRules {
            slots: 2,
            ..RegistrationRules::default()
        };
        let miners = [
            miner(0, "late", "2026-01-05T00:00:00Z"),
            miner(1, "early", "2026-01-01T00:00:00Z"),
        ];
        let unscored = leaderboard(&miners, &[]).unwrap();
        let imputed = standings(&[(miners[0].clone(), None), (miners[1].clone(), None)]);
        for rows in [unscored, imputed] {
            let decision =
                decide_registration(&rules, &rows, "new", at("2026-02-01T00:00:00Z")).unwrap();
            assert_eq!(decision.deregistered, Some(miners[0].clone()));
            assert_eq!(decision.registered.uid, 0);
        }
    }

    #[test]
    fn refusals() {
        let rows = standings(&[(miner(4, "a", "2026-01-01T00:00:00Z"), Some(0.5))]);
        assert_eq!(
            decide_registration(&three_slots(), &rows, "a", at("2026-02-01T00:00:00Z")),
            Err(RegistrationError::AlreadyRegistered {
                hotkey: "a".to_owned(),
                uid: 4
            })
        );
        let closed = RegistrationRules {
            slots: 0,
            ..RegistrationRules::default()
        };
        assert_eq!(
            decide_registration(&closed, &[], "b", at("2026-02-01T00:00:00Z")),
            Err(RegistrationError::NoSlots)
        );
    }
}
