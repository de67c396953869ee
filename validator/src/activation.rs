//! Daily activation of agent versions.
//!
//! This module owns the rule of which uploaded version of a miner's agent is active at an
//! instant. SPEC, "activation": "an upload becomes active at the next 00:00 UTC; only the newest
//! verified upload before that midnight activates; the miner's previous version deactivates
//! then". SPEC, "which version runs an event": "the version that was active when the event was
//! created", so the daemon asks [`active_version`] at the event's creation instant.
//!
//! The rule is stated as a function of timestamps only, not of when the daemon happened to
//! wake up, so a restarted daemon and a backtest reach the same answer:
//!
//! - a version *qualifies at* midnight `M` if it was uploaded strictly before `M` and verified
//!   strictly before `M` (an upload at exactly 00:00:00 waits for the next midnight, since it
//!   was not "before" this one);
//! - the version active at `t` is the newest (by upload instant) version qualifying at the
//!   last midnight at or before `t`. Activation is inclusive: at 00:00:00 the new version is
//!   already the active one.
//!
//! Deregistration is not handled here: the daemon stops a deregistered miner's runs.

use chrono::{DateTime, Days, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// One uploaded version of a miner's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVersion {
    /// The miner that uploaded it.
    pub hotkey: String,
    /// Hash of the component's bytes; identifies the version.
    pub hash: String,
    /// When the upload was accepted.
    pub uploaded_at: DateTime<Utc>,
    /// When it passed verification; `None` while pending or if it was refused (a refused
    /// version never activates).
    pub verified_at: Option<DateTime<Utc>>,
}

/// A stretch of time during which one version is a miner's active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivePeriod<'a> {
    /// The active version.
    pub version: &'a AgentVersion,
    /// When it became active (a midnight, inclusive).
    pub from: DateTime<Utc>,
    /// When the next version replaced it (a midnight, exclusive); `None` while still active.
    pub until: Option<DateTime<Utc>>,
}

/// The midnight (00:00 UTC) at or before `instant`: `instant` itself if it is a midnight.
#[must_use]
pub fn midnight_at_or_before(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The first midnight (00:00 UTC) strictly after `instant`: an upload at 23:59 gets the
/// midnight one minute later, an upload at 00:00 or 00:01 the midnight a day later.
///
/// Returns `None` only for an instant on the last day chrono can represent.
#[must_use]
pub fn next_midnight_after(instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next_day = instant.date_naive().checked_add_days(Days::new(1))?;
    Some(next_day.and_time(NaiveTime::MIN).and_utc())
}

/// Whether `version` may be activated at `midnight`: uploaded and verified before it.
#[must_use]
pub fn qualifies_at(version: &AgentVersion, midnight: DateTime<Utc>) -> bool {
    version.uploaded_at < midnight
        && version
            .verified_at
            .is_some_and(|verified| verified < midnight)
}

/// The earliest midnight at which `version` can become active: the first midnight after both
/// its upload and its verification. Whether it really activates then depends on whether a newer
/// version also qualifies; see [`activation_timeline`].
///
/// Returns `None` if the version is not verified (or at the end of chrono's calendar).
#[must_use]
pub fn earliest_activation(version: &AgentVersion) -> Option<DateTime<Utc>> {
    let verified_at = version.verified_at?;
    next_midnight_after(version.uploaded_at.max(verified_at))
}

/// The version of `hotkey`'s agent that is active at `at`, if any: the newest version
/// qualifying at the last midnight at or before `at`.
///
/// Versions of other miners in `versions` are ignored, and so is their order. Two versions with
/// the same upload instant (which the upload rate limit prevents) are ordered by hash so the
/// answer is still deterministic.
#[must_use]
pub fn active_version<'a>(
    versions: &'a [AgentVersion],
    hotkey: &str,
    at: DateTime<Utc>,
) -> Option<&'a AgentVersion> {
    let midnight = midnight_at_or_before(at);
    versions
        .iter()
        .filter(|version| version.hotkey == hotkey && qualifies_at(version, midnight))
        .max_by(|a, b| {
            a.uploaded_at
                .cmp(&b.uploaded_at)
                .then_with(|| a.hash.cmp(&b.hash))
        })
}

/// Every period during which one of `hotkey`'s versions was active, oldest first: what the
/// daemon records as each version's activated and deactivated instants.
///
/// A version that was superseded before its first midnight never appears: it never ran.
#[must_use]
pub fn activation_timeline<'a>(
    versions: &'a [AgentVersion],
    hotkey: &str,
) -> Vec<ActivePeriod<'a>> {
    // The active version can only change at a midnight where some version starts to qualify.
    let mut candidate_midnights: Vec<DateTime<Utc>> = versions
        .iter()
        .filter(|version| version.hotkey == hotkey)
        .filter_map(earliest_activation)
        .collect();
    candidate_midnights.sort_unstable();
    candidate_midnights.dedup();

    let mut periods: Vec<ActivePeriod<'a>> = Vec::new();
    for midnight in candidate_midnights {
        let Some(version) = active_version(versions, hotkey, midnight) else {
            continue;
        };
        if let Some(current) = periods.last_mut() {
            if std::ptr::eq(current.version, version) {
                continue;
            }
            current.until = Some(midnight);
        }
        periods.push(ActivePeriod {
            version,
            from: midnight,
            until: None,
        });
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;

    fn version(
        hotkey: &str,
        hash: &str,
        uploaded_at: &str,
        verified_at: Option<&str>,
    ) -> AgentVersion {
        AgentVersion {
            hotkey: hotkey.to_owned(),
            hash: hash.to_owned(),
            uploaded_at: at(uploaded_at),
            verified_at: verified_at.map(at),
        }
    }

    /// Verified a minute after upload, as a quick verification would be.
    fn verified_version(hotkey: &str, hash: &str, uploaded_at: &str) -> AgentVersion {
        let mut v = version(hotkey, hash, uploaded_at, None);
        v.verified_at = Some(v.uploaded_at + chrono::TimeDelta::seconds(30));
        v
    }

    fn active_hash<'a>(versions: &'a [AgentVersion], instant: &str) -> Option<&'a str> {
        active_version(versions, "m", at(instant)).map(|v| v.hash.as_str())
    }

    #[test]
    fn midnight_helpers() {
        assert_eq!(
            next_midnight_after(at("2026-03-01T23:59:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
        assert_eq!(
            next_midnight_after(at("2026-03-01T00:01:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
        // A midnight is not after itself.
        assert_eq!(
            next_midnight_after(at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
        // Month and year ends.
        assert_eq!(
            next_midnight_after(at("2026-02-28T12:00:00Z")),
            Some(at("2026-03-01T00:00:00Z"))
        );
        assert_eq!(
            next_midnight_after(at("2026-12-31T23:59:59Z")),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            midnight_at_or_before(at("2026-03-01T00:00:00Z")),
            at("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            midnight_at_or_before(at("2026-03-01T23:59:59Z")),
            at("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn upload_at_23_59_runs_from_the_next_day() {
        // Uploaded on 1 March at 23:59 (verified 23:59:30): active from 2 March 00:00.
        let versions = [verified_version("m", "v1", "2026-03-01T23:59:00Z")];
        assert_eq!(
            earliest_activation(&versions[0]),
            Some(at("2026-03-02T00:00:00Z"))
        );
        assert_eq!(active_hash(&versions, "2026-03-01T23:59:59Z"), None);
        assert_eq!(active_hash(&versions, "2026-03-02T00:00:00Z"), Some("v1"));
        assert_eq!(active_hash(&versions, "2026-03-02T23:59:59Z"), Some("v1"));
    }

    #[test]
    fn upload_at_00_01_runs_from_the_day_after() {
        // v1 was active already; v2 uploaded on 2 March at 00:01 waits for 3 March 00:00,
        // two minutes of real time later than the 23:59 upload but a whole day later to run.
        let versions = [
            verified_version("m", "v1", "2026-02-20T10:00:00Z"),
            verified_version("m", "v2", "2026-03-02T00:01:00Z"),
        ];
        assert_eq!(
            earliest_activation(&versions[1]),
            Some(at("2026-03-03T00:00:00Z"))
        );
        assert_eq!(active_hash(&versions, "2026-03-02T00:01:00Z"), Some("v1"));
        assert_eq!(active_hash(&versions, "2026-03-02T23:59:59Z"), Some("v1"));
        assert_eq!(active_hash(&versions, "2026-03-03T00:00:00Z"), Some("v2"));
    }

    #[test]
    fn upload_exactly_at_midnight_waits_a_day() {
        // Not "before" 2 March 00:00, so 3 March 00:00.
        let versions = [verified_version("m", "v1", "2026-03-02T00:00:00Z")];
        assert_eq!(active_hash(&versions, "2026-03-02T12:00:00Z"), None);
        assert_eq!(active_hash(&versions, "2026-03-03T00:00:00Z"), Some("v1"));
    }

    #[test]
    fn only_the_newest_verified_upload_before_midnight_activates() {
        // Three uploads on 1 March; v3 is the newest but never verified, so v2 (the newest
        // verified) activates on 2 March and v1 never runs.
        let versions = [
            verified_version("m", "v1", "2026-03-01T08:00:00Z"),
            verified_version("m", "v2", "2026-03-01T12:00:00Z"),
            version("m", "v3", "2026-03-01T18:00:00Z", None),
        ];
        assert_eq!(active_hash(&versions, "2026-03-02T00:00:00Z"), Some("v2"));
        assert_eq!(active_hash(&versions, "2026-03-09T00:00:00Z"), Some("v2"));
    }

    #[test]
    fn verification_after_midnight_delays_activation() {
        // v2 uploaded on 1 March but verified at 2 March 00:00:00 exactly: not verified
        // *before* that midnight, so v1 stays active on 2 March and v2 takes over on 3 March.
        let versions = [
            verified_version("m", "v1", "2026-02-25T08:00:00Z"),
            version(
                "m",
                "v2",
                "2026-03-01T23:00:00Z",
                Some("2026-03-02T00:00:00Z"),
            ),
        ];
        assert_eq!(
            earliest_activation(&versions[1]),
            Some(at("2026-03-03T00:00:00Z"))
        );
        assert_eq!(active_hash(&versions, "2026-03-02T09:00:00Z"), Some("v1"));
        assert_eq!(active_hash(&versions, "2026-03-03T00:00:00Z"), Some("v2"));
    }

    #[test]
    fn other_miners_and_input_order_do_not_matter() {
        let versions = [
            verified_version("m", "new", "2026-03-05T08:00:00Z"),
            verified_version("other", "theirs", "2026-03-06T08:00:00Z"),
            verified_version("m", "old", "2026-03-01T08:00:00Z"),
        ];
        assert_eq!(active_hash(&versions, "2026-03-10T00:00:00Z"), Some("new"));
        assert_eq!(
            active_version(&versions, "nobody", at("2026-03-10T00:00:00Z")),
            None
        );
        assert_eq!(
            earliest_activation(&version("m", "x", "2026-03-01T08:00:00Z", None)),
            None
        );
    }

    #[test]
    fn timeline_lists_activation_and_deactivation_midnights() {
        let versions = [
            verified_version("m", "v1", "2026-03-01T08:00:00Z"),
            // Superseded by v3 the same day: never active.
            verified_version("m", "v2", "2026-03-04T08:00:00Z"),
            verified_version("m", "v3", "2026-03-04T20:00:00Z"),
            verified_version("other", "x", "2026-03-02T08:00:00Z"),
        ];
        let timeline: Vec<_> = activation_timeline(&versions, "m")
            .iter()
            .map(|p| (p.version.hash.as_str(), p.from, p.until))
            .collect();
        assert_eq!(
            timeline,
            [
                (
                    "v1",
                    at("2026-03-02T00:00:00Z"),
                    Some(at("2026-03-05T00:00:00Z"))
                ),
                ("v3", at("2026-03-05T00:00:00Z"), None),
            ]
        );
        assert!(activation_timeline(&versions, "nobody").is_empty());
    }
}
