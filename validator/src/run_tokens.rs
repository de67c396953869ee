//! Run tokens for the gateway, minted by the validator per run.
//!
//! This module owns the claims the daemon puts in a run token (the run, the miner, the agent,
//! the per-service cost caps, the run's as-of instant, a validity a little longer than the
//! run's time limit) and signs
//! them with the validator's key through `sooth-proxy`'s token format. It must not decide
//! anything the gateway decides (which key pays, the daily caps).

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use sooth_protocol::{MAX_TOKEN_LIFETIME_SECS, RunClaims, mint};

use crate::executor::RunJob;
use crate::sandbox::RunTokens;

/// How long after a run's time limit its token stays valid: the last gateway call of a run
/// may still be answered after the run was killed.
const TOKEN_GRACE_SECS: i64 = 60;

/// Signs run tokens with the validator's key.
pub struct SignedRunTokens {
    key: SigningKey,
    caps_usd: BTreeMap<String, f64>,
}

impl std::fmt::Debug for SignedRunTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        formatter
            .debug_struct("SignedRunTokens")
            .field("caps_usd", &self.caps_usd)
            .finish_non_exhaustive()
    }
}

impl SignedRunTokens {
    /// Tokens signed with `key`, each run capped at `caps_usd` per service (`"*"` for every
    /// service not named).
    #[must_use]
    pub fn new(key: SigningKey, caps_usd: BTreeMap<String, f64>) -> Self {
        Self { key, caps_usd }
    }
}

impl RunTokens for SignedRunTokens {
    fn token_for(&self, job: &RunJob, limit: Duration) -> String {
        // The gateway checks tokens against real time, whatever clock the daemon reads.
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(limit.as_secs())
            .unwrap_or(MAX_TOKEN_LIFETIME_SECS)
            .saturating_add(TOKEN_GRACE_SECS)
            .min(MAX_TOKEN_LIFETIME_SECS);
        let claims = RunClaims {
            run_id: job.run_id.clone(),
            miner: job.hotkey.clone(),
            agent_hash: job.version_hash.clone(),
            caps_usd: self.caps_usd.clone(),
            linked_key: false,
            issued_at: now,
            expires_at: now + lifetime,
            // What the agent may see of the world ends at the event's creation, as its clock
            // says: the gateway clamps searches to it, so a backtest cannot look answers up.
            as_of: job.event.event.created_at.timestamp(),
        };
        mint(&self.key, &claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::store::{EventRecord, EventStatus};
    use chrono::{DateTime, Utc};
    use sooth_protocol::verify;

    #[test]
    fn a_runs_token_is_as_of_its_events_creation() {
        let created_at: DateTime<Utc> = "2025-03-02T12:00:00Z".parse().expect("instant");
        let job = RunJob {
            run_id: RunJob::run_id_for("e1", "5Miner"),
            event: EventRecord {
                event: Event {
                    kind: "market".into(),
                    ..Event::new("e1", "Will it?", created_at)
                },
                status: EventStatus::Open,
                outcome: None,
                resolved_at: None,
            },
            hotkey: "5Miner".into(),
            uid: 3,
            version_hash: "ab".repeat(32),
        };
        let key = SigningKey::from_bytes(&[5; 32]);
        let tokens = SignedRunTokens::new(key.clone(), BTreeMap::from([("*".into(), 0.05)]));
        let token = tokens.token_for(&job, Duration::from_secs(240));
        let claims = verify(&key.verifying_key(), &token, Utc::now().timestamp()).expect("valid");
        // Minted now, for a run that sees the world as it was at the creation.
        assert_eq!(claims.as_of, created_at.timestamp());
        assert!(claims.issued_at > claims.as_of);
        assert_eq!(
            (claims.run_id.as_str(), claims.miner.as_str()),
            ("e1/5Miner", "5Miner")
        );
    }
}
