//! Epistula v2: how a miner signs each request to a validator, as subnet
//! tooling speaks it.
//!
//! # Headers
//!
//! | header | value |
//! |---|---|
//! | `Epistula-Version` | `2` |
//! | `Epistula-Timestamp` | when the request was signed: Unix milliseconds, in decimal without sign or leading zeros |
//! | `Epistula-Uuid` | a fresh UUID (v4 when made here) in its 36-character `8-4-4-4-12` hex form |
//! | `Epistula-Signed-By` | the miner's hotkey in its canonical text (see [`Hotkey`]) |
//! | `Epistula-Signed-For` | the canonical text of the hotkey of the validator the request is for |
//! | `Epistula-Request-Signature` | `0x` followed by the 64-byte signature of the message below in hex |
//!
//! Header names are case-insensitive, as in all of HTTP; the constants here
//! are lowercase.
//!
//! # Signed message
//!
//! The UTF-8 text
//!
//! ```text
//! {hex(sha256(body))}.{uuid}.{timestamp}.{signed_for}
//! ```
//!
//! where `hex` is lowercase, `body` the exact bytes of the HTTP request body
//! (empty when there is none) and the other three the header values
//! exactly as sent (see [`epistula_message`]). The signature is the hotkey's
//! (see [`Hotkey::verify`]): Ed25519, or sr25519 in the `substrate` context.
//!
//! # Verifying
//!
//! [`EpistulaVerifier::verify`] checks, in this order, and stops at the
//! first failure:
//!
//! 1. `Epistula-Version` is present and is `2`;
//! 2. the other five headers are present, then each is well formed
//!    (timestamp, uuid, signed-by, which must be a valid hotkey,
//!    signed-for, signature, in that order);
//! 3. the timestamp is at most the window before or after the verifier's
//!    clock (exactly the window is accepted);
//! 4. `Epistula-Signed-For` is the verifier's own hotkey text, exactly;
//! 5. the signer's scheme is one the verifier accepts;
//! 6. the signature verifies over the message rebuilt from the body
//!    received and the header values;
//! 7. the hotkey has not used the uuid (compared case-insensitively) in a
//!    request accepted within the window; the uuid is remembered only once
//!    the signature has verified, so nobody can use up a miner's uuids.
//!
//! Whether the hotkey is registered, or allowed to do what it asks, is the
//! caller's business.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::hotkey::{Hotkey, HotkeyScheme, SecretHotkey};
use crate::replay_guard::{Recorded, ReplayGuard};

/// The header carrying the Epistula version.
pub const HEADER_EPISTULA_VERSION: &str = "epistula-version";
/// The header carrying the signing time, in Unix milliseconds.
pub const HEADER_EPISTULA_TIMESTAMP: &str = "epistula-timestamp";
/// The header carrying the request's UUID.
pub const HEADER_EPISTULA_UUID: &str = "epistula-uuid";
/// The header naming the signer's hotkey.
pub const HEADER_EPISTULA_SIGNED_BY: &str = "epistula-signed-by";
/// The header naming the hotkey of the validator the request is for.
pub const HEADER_EPISTULA_SIGNED_FOR: &str = "epistula-signed-for";
/// The header carrying the signature (`0x` and hex).
pub const HEADER_EPISTULA_SIGNATURE: &str = "epistula-request-signature";
/// The only Epistula version spoken: the value of `Epistula-Version`.
pub const EPISTULA_VERSION: &str = "2";

/// How many `(hotkey, uuid)` pairs an [`EpistulaVerifier`] remembers at
/// most, unless told otherwise: when that many requests were accepted within
/// the window, further ones are refused as [`EpistulaError::Busy`] rather
/// than any forgotten.
pub const EPISTULA_UUIDS_REMEMBERED: usize = 1_000_000;

/// The longest `Epistula-Signed-For` value accepted, in bytes (a hotkey's
/// text is at most 64).
pub const MAX_SIGNED_FOR_LEN: usize = 128;

/// The six header values of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpistulaHeaders {
    /// `Epistula-Version`: always `2`.
    pub version: String,
    /// `Epistula-Timestamp`: Unix milliseconds, decimal.
    pub timestamp: String,
    /// `Epistula-Uuid`: a fresh UUID v4, lowercase.
    pub uuid: String,
    /// `Epistula-Signed-By`: the signer's hotkey text.
    pub signed_by: String,
    /// `Epistula-Signed-For`: the validator's hotkey text.
    pub signed_for: String,
    /// `Epistula-Request-Signature`: `0x` and 128 lowercase hex characters.
    pub signature: String,
}

impl EpistulaHeaders {
    /// The headers as `(name, value)` pairs, names in lowercase, for an HTTP
    /// client to add to the request.
    #[must_use]
    pub fn pairs(&self) -> [(&'static str, &str); 6] {
        [
            (HEADER_EPISTULA_VERSION, &self.version),
            (HEADER_EPISTULA_TIMESTAMP, &self.timestamp),
            (HEADER_EPISTULA_UUID, &self.uuid),
            (HEADER_EPISTULA_SIGNED_BY, &self.signed_by),
            (HEADER_EPISTULA_SIGNED_FOR, &self.signed_for),
            (HEADER_EPISTULA_SIGNATURE, &self.signature),
        ]
    }

    /// The value of the header `name` (case-insensitive), if it is one of
    /// the six: a lookup to hand to [`EpistulaVerifier::verify`].
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs()
            .into_iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// The message an Epistula signature covers:
/// `{hex(sha256(body))}.{uuid}.{timestamp}.{signed_for}`, with the last three
/// as the header values are sent.
#[must_use]
pub fn epistula_message(body: &[u8], uuid: &str, timestamp: &str, signed_for: &str) -> String {
    format!(
        "{}.{uuid}.{timestamp}.{signed_for}",
        hex::encode(Sha256::digest(body))
    )
}

/// Signs a request with `body` (the exact bytes to be sent) for the
/// validator whose hotkey text is `signed_for`, at `now_ms` (Unix
/// milliseconds), with a fresh UUID v4.
///
/// # Panics
///
/// If the operating system cannot provide random bytes for the UUID.
#[must_use]
pub fn sign(secret: &SecretHotkey, body: &[u8], signed_for: &str, now_ms: u64) -> EpistulaHeaders {
    let timestamp = now_ms.to_string();
    let uuid = uuid_v4();
    let message = epistula_message(body, &uuid, &timestamp, signed_for);
    let signature = secret.sign(message.as_bytes());
    EpistulaHeaders {
        version: EPISTULA_VERSION.to_owned(),
        timestamp,
        uuid,
        signed_by: secret.public().to_string(),
        signed_for: signed_for.to_owned(),
        signature: format!("0x{}", hex::encode(signature)),
    }
}

/// A random (version 4) UUID in its lowercase hyphenated form.
fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// What a verified request says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEpistula {
    /// The hotkey that signed it.
    pub hotkey: Hotkey,
    /// Its UUID, as sent.
    pub uuid: String,
    /// When it was signed, in Unix milliseconds.
    pub timestamp_ms: u64,
}

/// Why an Epistula-signed request was refused. [`EpistulaError::code`]
/// gives each kind a stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpistulaError {
    /// A header is absent.
    #[error("missing header {header}")]
    Missing {
        /// The header's name (lowercase).
        header: &'static str,
    },
    /// A header's value does not have the required form.
    #[error("malformed header {header}: {problem}")]
    Malformed {
        /// The header's name (lowercase).
        header: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// `Epistula-Version` is not `2`.
    #[error("unsupported Epistula version {found:?}: only \"2\" is spoken here")]
    UnsupportedVersion {
        /// The version sent (at most its first 16 characters).
        found: String,
    },
    /// The timestamp is further in the past than the window.
    #[error("the request was signed {age_ms} ms ago, beyond the {window_ms} ms window")]
    Stale {
        /// How long ago, in milliseconds.
        age_ms: u64,
        /// The window, in milliseconds.
        window_ms: u64,
    },
    /// The timestamp is further in the future than the window.
    #[error(
        "the request is signed {ahead_ms} ms in the future, beyond the {window_ms} ms window (check the clock)"
    )]
    Future {
        /// How far ahead, in milliseconds.
        ahead_ms: u64,
        /// The window, in milliseconds.
        window_ms: u64,
    },
    /// The request was signed for another validator.
    #[error("the request is signed for {signed_for}, not for this validator ({expected})")]
    WrongValidator {
        /// The `Epistula-Signed-For` value sent.
        signed_for: String,
        /// This validator's hotkey text.
        expected: String,
    },
    /// The signer's scheme is not one the verifier accepts.
    #[error("{scheme} hotkeys are not accepted here")]
    SchemeNotAccepted {
        /// The signer's scheme.
        scheme: HotkeyScheme,
    },
    /// The signature does not verify with the signer's hotkey over this
    /// body and these headers.
    #[error("the request signature does not verify with the hotkey in epistula-signed-by")]
    BadSignature,
    /// The hotkey already used this uuid in a request accepted within the
    /// window.
    #[error("the request's uuid was already used by this hotkey (a replayed request?)")]
    Replayed,
    /// The verifier remembers as many recent uuids as it may, and takes no
    /// new request until some are older than the window.
    #[error("too many recent requests; try again shortly")]
    Busy,
}

impl EpistulaError {
    /// A stable snake_case name of the error's kind, for an API's error
    /// codes: `missing_header`, `malformed_header`, `unsupported_version`,
    /// `stale_request`, `future_request`, `wrong_validator`,
    /// `scheme_not_accepted`, `bad_signature`, `replayed_request` or `busy`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "missing_header",
            Self::Malformed { .. } => "malformed_header",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Stale { .. } => "stale_request",
            Self::Future { .. } => "future_request",
            Self::WrongValidator { .. } => "wrong_validator",
            Self::SchemeNotAccepted { .. } => "scheme_not_accepted",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed_request",
            Self::Busy => "busy",
        }
    }

    /// The header the error is about, for a missing or malformed header.
    #[must_use]
    pub fn header(&self) -> Option<&'static str> {
        match self {
            Self::Missing { header } | Self::Malformed { header, .. } => Some(header),
            _ => None,
        }
    }
}

fn malformed(header: &'static str, problem: impl Into<String>) -> EpistulaError {
    EpistulaError::Malformed {
        header,
        problem: problem.into(),
    }
}

/// Verifies Epistula-signed requests for one validator, and refuses a
/// request whose uuid its signer already used within the window.
///
/// One verifier serves all of a validator's requests (it is `Sync`): the
/// uuids it remembers are what stops a replay.
#[derive(Debug)]
pub struct EpistulaVerifier {
    expected_signed_for: String,
    accepted_schemes: Vec<HotkeyScheme>,
    window_ms: u64,
    replays: ReplayGuard,
}

impl EpistulaVerifier {
    /// A verifier of requests signed for the hotkey whose text is
    /// `expected_signed_for`, by hotkeys of the `accepted_schemes`, with
    /// timestamps at most `window` from the verifier's clock either way. It
    /// remembers at most [`EPISTULA_UUIDS_REMEMBERED`] uuids.
    #[must_use]
    pub fn new(
        expected_signed_for: String,
        accepted_schemes: Vec<HotkeyScheme>,
        window: Duration,
    ) -> Self {
        Self {
            expected_signed_for,
            accepted_schemes,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            replays: ReplayGuard::new(EPISTULA_UUIDS_REMEMBERED),
        }
    }

    /// The same verifier remembering at most `max` uuids.
    #[must_use]
    pub fn with_max_remembered(mut self, max: usize) -> Self {
        self.replays = ReplayGuard::new(max);
        self
    }

    /// The hotkey text requests must be signed for.
    #[must_use]
    pub fn expected_signed_for(&self) -> &str {
        &self.expected_signed_for
    }

    /// The window, in milliseconds.
    #[must_use]
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// How many uuids are remembered now (some may be older than the
    /// window, until the next request prunes them).
    #[must_use]
    pub fn remembered(&self) -> usize {
        self.replays.len()
    }

    /// Verifies a request received with `body` at `now_ms` (Unix
    /// milliseconds), as described in the [module documentation](self),
    /// and on success remembers its uuid.
    ///
    /// `headers` returns a header's value given its lowercase name (look it
    /// up case-insensitively, as HTTP names are); a value that is not text
    /// can be given as absent.
    ///
    /// # Errors
    ///
    /// The first check that fails, as an [`EpistulaError`]:
    /// [`Missing`](EpistulaError::Missing) or
    /// [`UnsupportedVersion`](EpistulaError::UnsupportedVersion) for the
    /// version; [`Missing`](EpistulaError::Missing), then
    /// [`Malformed`](EpistulaError::Malformed) for the other headers;
    /// [`Stale`](EpistulaError::Stale) or [`Future`](EpistulaError::Future)
    /// for a timestamp outside the window;
    /// [`WrongValidator`](EpistulaError::WrongValidator);
    /// [`SchemeNotAccepted`](EpistulaError::SchemeNotAccepted);
    /// [`BadSignature`](EpistulaError::BadSignature);
    /// [`Replayed`](EpistulaError::Replayed) for a uuid the hotkey used
    /// within the window, or [`Busy`](EpistulaError::Busy) when the verifier
    /// remembers as many uuids as it may.
    pub fn verify(
        &self,
        headers: impl Fn(&str) -> Option<String>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<VerifiedEpistula, EpistulaError> {
        let checked = self.check_headers(&headers, now_ms)?;
        let message = epistula_message(
            body,
            &checked.uuid,
            &checked.timestamp_text,
            &checked.signed_for,
        );
        checked
            .hotkey
            .verify(message.as_bytes(), &checked.signature)
            .map_err(|_| EpistulaError::BadSignature)?;

        match self.replays.record(
            &checked.hotkey,
            &checked.uuid,
            checked.timestamp_ms,
            now_ms,
            self.window_ms,
        ) {
            Recorded::New => Ok(VerifiedEpistula {
                hotkey: checked.hotkey,
                uuid: checked.uuid,
                timestamp_ms: checked.timestamp_ms,
            }),
            Recorded::Seen => Err(EpistulaError::Replayed),
            Recorded::Full => Err(EpistulaError::Busy),
            Recorded::Stale { age_ms } => Err(EpistulaError::Stale {
                age_ms,
                window_ms: self.window_ms,
            }),
        }
    }

    /// Everything [`verify`](Self::verify) checks before the body: the headers' presence and
    /// form, the timestamp's window, the validator signed for and the scheme. A server calls
    /// it before reading a large body, so that a request that cannot pass costs no read.
    /// Returns the signer's hotkey.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify), up to [`SchemeNotAccepted`](EpistulaError::SchemeNotAccepted).
    pub fn precheck(
        &self,
        headers: impl Fn(&str) -> Option<String>,
        now_ms: u64,
    ) -> Result<Hotkey, EpistulaError> {
        Ok(self.check_headers(&headers, now_ms)?.hotkey)
    }

    fn check_headers(
        &self,
        headers: &impl Fn(&str) -> Option<String>,
        now_ms: u64,
    ) -> Result<CheckedHeaders, EpistulaError> {
        let get = |header: &'static str| headers(header).ok_or(EpistulaError::Missing { header });
        let version = get(HEADER_EPISTULA_VERSION)?;
        if version != EPISTULA_VERSION {
            return Err(EpistulaError::UnsupportedVersion {
                found: version.chars().take(16).collect(),
            });
        }
        let timestamp_text = get(HEADER_EPISTULA_TIMESTAMP)?;
        let uuid = get(HEADER_EPISTULA_UUID)?;
        let signed_by = get(HEADER_EPISTULA_SIGNED_BY)?;
        let signed_for = get(HEADER_EPISTULA_SIGNED_FOR)?;
        let signature = get(HEADER_EPISTULA_SIGNATURE)?;

        let timestamp_ms = parse_timestamp(&timestamp_text)?;
        check_uuid(&uuid)?;
        let hotkey = Hotkey::parse(&signed_by)
            .map_err(|error| malformed(HEADER_EPISTULA_SIGNED_BY, error.with_cause()))?;
        check_signed_for(&signed_for)?;
        let signature = parse_signature(&signature)?;

        self.check_window(timestamp_ms, now_ms)?;
        if signed_for != self.expected_signed_for {
            return Err(EpistulaError::WrongValidator {
                signed_for,
                expected: self.expected_signed_for.clone(),
            });
        }
        if !self.accepted_schemes.contains(&hotkey.scheme()) {
            return Err(EpistulaError::SchemeNotAccepted {
                scheme: hotkey.scheme(),
            });
        }
        Ok(CheckedHeaders {
            hotkey,
            uuid,
            timestamp_text,
            timestamp_ms,
            signed_for,
            signature,
        })
    }

    fn check_window(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), EpistulaError> {
        let window_ms = self.window_ms;
        if timestamp_ms <= now_ms {
            let age_ms = now_ms - timestamp_ms;
            if age_ms > window_ms {
                return Err(EpistulaError::Stale { age_ms, window_ms });
            }
        } else {
            let ahead_ms = timestamp_ms - now_ms;
            if ahead_ms > window_ms {
                return Err(EpistulaError::Future {
                    ahead_ms,
                    window_ms,
                });
            }
        }
        Ok(())
    }
}

/// A request's headers once checked, before its signature.
struct CheckedHeaders {
    hotkey: Hotkey,
    uuid: String,
    timestamp_text: String,
    timestamp_ms: u64,
    signed_for: String,
    signature: [u8; 64],
}

fn parse_timestamp(text: &str) -> Result<u64, EpistulaError> {
    let problem = "not Unix milliseconds as a decimal integer without sign or leading zeros";
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(malformed(HEADER_EPISTULA_TIMESTAMP, problem));
    }
    text.parse::<u64>()
        .map_err(|_| malformed(HEADER_EPISTULA_TIMESTAMP, "too large"))
}

fn check_uuid(text: &str) -> Result<(), EpistulaError> {
    let bytes = text.as_bytes();
    let ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if ok {
        Ok(())
    } else {
        Err(malformed(
            HEADER_EPISTULA_UUID,
            "not a UUID (36 characters: hex digits in groups of 8-4-4-4-12 joined by '-')",
        ))
    }
}

fn check_signed_for(text: &str) -> Result<(), EpistulaError> {
    if text.is_empty() {
        return Err(malformed(
            HEADER_EPISTULA_SIGNED_FOR,
            "empty (requests must be signed for this validator's hotkey)",
        ));
    }
    if text.len() > MAX_SIGNED_FOR_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(
            HEADER_EPISTULA_SIGNED_FOR,
            format!("not a hotkey: at most {MAX_SIGNED_FOR_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn parse_signature(text: &str) -> Result<[u8; 64], EpistulaError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(digits, &mut bytes).map_err(|_| {
        malformed(
            HEADER_EPISTULA_SIGNATURE,
            "not a 64-byte signature: \"0x\" and 128 hex characters",
        )
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_fresh_version_4() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        for uuid in [a, b] {
            assert_eq!(check_uuid(&uuid), Ok(()));
            assert_eq!(uuid, uuid.to_lowercase());
            assert_eq!(&uuid[14..15], "4", "{uuid}");
            assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
        }
    }

    #[test]
    fn the_message_is_the_documented_text() {
        assert_eq!(
            epistula_message(b"", "u", "1", "v"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.u.1.v"
        );
    }

    #[test]
    fn timestamps_must_be_canonical_decimal() {
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(parse_timestamp("1767225600000"), Ok(1_767_225_600_000));
        assert_eq!(parse_timestamp(&u64::MAX.to_string()), Ok(u64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            " 1",
            "1.5",
            "1e3",
            "18446744073709551616",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signatures_may_omit_the_prefix_and_use_either_case() {
        let hex = "ab".repeat(64);
        for text in [
            format!("0x{hex}"),
            hex.clone(),
            format!("0X{}", hex.to_uppercase()),
        ] {
            assert_eq!(parse_signature(&text), Ok([0xab; 64]), "{text}");
        }
        for bad in [
            String::new(),
            "0x".into(),
            format!("0x{}", &hex[..126]),
            format!("0x{hex}00"),
        ] {
            assert!(parse_signature(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let errors = [
            EpistulaError::Missing { header: "h" },
            malformed("h", "p"),
            EpistulaError::UnsupportedVersion { found: "1".into() },
            EpistulaError::Stale {
                age_ms: 1,
                window_ms: 0,
            },
            EpistulaError::Future {
                ahead_ms: 1,
                window_ms: 0,
            },
            EpistulaError::WrongValidator {
                signed_for: "a".into(),
                expected: "b".into(),
            },
            EpistulaError::SchemeNotAccepted {
                scheme: HotkeyScheme::Sr25519,
            },
            EpistulaError::BadSignature,
            EpistulaError::Replayed,
            EpistulaError::Busy,
        ];
        let codes: std::collections::BTreeSet<&str> =
            errors.iter().map(EpistulaError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(
            codes
                .iter()
                .all(|code| { code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') })
        );
    }
}
