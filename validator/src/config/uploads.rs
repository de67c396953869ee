//! The sections of the validator's configuration that open it to miners: `[uploads]`,
//! `[registration]`, `[linked_keys]` and `[verification]`.
//!
//! ```toml
//! [uploads]
//! max_bytes = 33554432             # an upload's size cap (32 MiB), refused before reading it
//! min_interval_hours = 72          # one upload per hotkey every 3 days
//! signature_window_secs = 8        # Epistula timestamps accepted this far either side of now
//! schemes = ["ed25519", "sr25519"] # hotkey schemes accepted
//! max_in_flight = 4                # upload bodies read at once (memory: this x max_bytes)
//!
//! [registration]
//! open = false                     # miners may register themselves (a signed request)
//! max_per_hour = 10                # self-registrations accepted per hour, all miners together
//!
//! [linked_keys]                    # miners' own service keys (with an in-process gateway)
//! key_file = "linked-keys.key"     # seals them at rest; relative to data_dir, made on first
//!                                  # use (mode 0600); keep it out of the database's backups
//!
//! [verification]
//! probe_file = "probe.jsonl"       # public past events with outcomes (none: no probe runs)
//! probe_events = 200               # the first N events of the file
//! max_attempts = 3                 # attempts at verifying a version before it is rejected
//! lease_secs = 120                 # a worker's hold on an item, renewed while it works
//! max_probe_failures = 20          # failed probe runs that reject a version
//! live_window = 101                # the daily check's last live events per active version
//!
//! [verification.originality]       # see `sooth_validator::integrity`
//! [verification.concordance]
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sooth_protocol::HotkeyScheme;

use crate::integrity::{ConcordanceConfig, OriginalityConfig};

/// `[uploads]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// An upload's size cap, in bytes (SPEC: 32 MiB).
    pub max_bytes: u64,
    /// Hours between two uploads of one hotkey (SPEC: 3 days).
    pub min_interval_hours: u32,
    /// Seconds either side of now an Epistula timestamp may be (and a uuid is remembered).
    pub signature_window_secs: u64,
    /// The hotkey schemes accepted.
    pub schemes: Vec<HotkeyScheme>,
    /// Upload bodies read at once; more wait.
    pub max_in_flight: usize,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            min_interval_hours: 72,
            signature_window_secs: 8,
            schemes: vec![HotkeyScheme::Ed25519, HotkeyScheme::Sr25519],
            max_in_flight: 4,
        }
    }
}

/// `[registration]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Whether miners may register themselves with a signed request; otherwise only the
    /// operator registers them (`sooth validator add-miner`).
    pub open: bool,
    /// Self-registrations accepted per hour, all miners together.
    pub max_per_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            open: false,
            max_per_hour: 10,
        }
    }
}

/// `[linked_keys]`: miners' own service keys, linked through the API
/// (`POST /v1/services/{service}/key`) and handed to the gateway started in-process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkedKeysConfig {
    /// The key file that seals miners' keys in the database (XChaCha20-Poly1305), relative to
    /// the data directory (an absolute path puts it elsewhere: keep it apart from the
    /// database's backups). Made on first use; losing it loses the keys, which miners then
    /// link again.
    pub key_file: PathBuf,
}

impl Default for LinkedKeysConfig {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("linked-keys.key"),
        }
    }
}

/// `[verification]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    /// The probe set: a JSON Lines file of past events with outcomes (relative to the
    /// configuration's directory). Without one, versions are verified without probe runs, and
    /// so without the originality check.
    pub probe_file: Option<PathBuf>,
    /// How many of the file's events make the probe set (the first ones).
    pub probe_events: usize,
    /// Attempts at verifying a version before it is rejected with the last error.
    pub max_attempts: u32,
    /// Seconds a worker holds an item without renewing; a worker that dies loses it then.
    pub lease_secs: u64,
    /// Failed probe runs (timeouts, traps, invalid outputs...) that reject a version; the
    /// probe runs stop there.
    pub max_probe_failures: usize,
    /// Each active version's last live events the daily check compares (SPEC: 101). Copies
    /// with little noise are caught more surely over more events: on the shared questions a
    /// copy with noise 0.03 in 89.5 % of draws over 101 events, in all over 200.
    pub live_window: usize,
    /// The originality check.
    pub originality: OriginalityConfig,
    /// The concordance check (daily, on live events).
    pub concordance: ConcordanceConfig,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            probe_file: None,
            probe_events: 200,
            max_attempts: 3,
            lease_secs: 120,
            max_probe_failures: 20,
            live_window: 101,
            originality: OriginalityConfig::default(),
            concordance: ConcordanceConfig::default(),
        }
    }
}

impl UploadsConfig {
    pub(super) fn problem(&self) -> Option<&'static str> {
        if self.max_bytes == 0 {
            return Some("uploads.max_bytes must be at least 1");
        }
        if self.signature_window_secs == 0 || self.signature_window_secs > 3600 {
            return Some("uploads.signature_window_secs must be between 1 and 3600");
        }
        if self.schemes.is_empty() {
            return Some("uploads.schemes must name at least one scheme");
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return Some("uploads.max_in_flight must be between 1 and 1024");
        }
        None
    }
}

impl VerificationConfig {
    pub(super) fn problem(&self) -> Option<&'static str> {
        if self.probe_events == 0 {
            return Some("verification.probe_events must be at least 1");
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Some("verification.max_attempts must be between 1 and 100");
        }
        if self.lease_secs < 5 {
            return Some("verification.lease_secs must be at least 5");
        }
        if self.live_window < 20 || self.live_window > 10_000 {
            return Some("verification.live_window must be between 20 and 10000");
        }
        None
    }
}
