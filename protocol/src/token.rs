//! Run tokens: a validator's authorisation for one agent run to spend
//! through the gateway.
//!
//! The validator (or `sooth agent test`) mints one token per run with its
//! Ed25519 key; the gateway verifies it with the matching public key and
//! refuses every request without a valid one. The agent never sees the
//! token: the runner's host functions attach it.
//!
//! # Format
//!
//! ```text
//! token     = b64(payload) "." b64(signature)
//! payload   = the claims as compact JSON (fields in declaration order,
//!             caps sorted by service name, no whitespace)
//! signature = Ed25519(validator key, "sooth-run-token-v1\n" || payload)
//! ```
//!
//! `b64` is base64url without padding (RFC 4648 §5), and the prefix
//! `sooth-run-token-v1\n` (19 bytes, ending in a line feed) separates this
//! use of the key from any other. The signature covers the payload bytes
//! exactly as they appear in the token, so a verifier checks the bytes it
//! received and never re-serialises them. A payload looks like:
//!
//! ```text
//! {"run_id":"r-42","miner":"5F...","agent_hash":"ab12...","caps_usd":{"llm":0.05,"search":0.01},
//!  "linked_key":false,"issued_at":1767225600,"expires_at":1767226200,"as_of":1767139200}
//! ```
//!
//! Every field is required: a payload without `as_of` (minted before it
//! existed) is refused as malformed, since a run without an as-of instant
//! could search the future.
//!
//! # Verification
//!
//! [`verify`] checks, in this order, and stops at the first failure:
//!
//! 1. shape: at most [`MAX_TOKEN_LEN`] bytes (checked before any decoding)
//!    and exactly one `.`;
//! 2. both parts are canonical unpadded base64url, the signature 64 bytes;
//! 3. the signature, with `verify_strict` (no small-order keys, no
//!    malleable signatures);
//! 4. the payload is JSON for [`RunClaims`], with no unknown fields;
//! 5. the times: `expires_at` after `issued_at` by at most
//!    [`MAX_TOKEN_LIFETIME_SECS`], `issued_at` no more than
//!    [`CLOCK_SKEW_SECS`] in the future, and the current time strictly
//!    before `expires_at` (no skew is granted on expiry);
//! 6. every cap finite and non-negative, `run_id` and `miner` non-empty.
//!
//! Errors describe what is wrong without repeating the token.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The domain-separation prefix of the message a run token's signature covers.
pub const TOKEN_DOMAIN: &[u8] = b"sooth-run-token-v1\n";

/// The longest token text [`verify`] accepts, in bytes; longer ones are
/// refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// How far in the future `issued_at` may be, in seconds, to allow for clock
/// differences between the validator and the gateway.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// The longest a run token may be valid (`expires_at - issued_at`), in
/// seconds: a day, against runs of minutes. The gateway's ledger keeps a
/// run's totals in memory for this long after its last call, and can do so
/// only because no run outlives it.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;

/// What a run token authorises: one run of one miner's agent, with a cost
/// cap per service, within a time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunClaims {
    /// The run's identifier, unique per validator.
    pub run_id: String,
    /// The miner's hotkey (SS58 address) the run is made for.
    pub miner: String,
    /// The hash of the agent being run.
    pub agent_hash: String,
    /// Per service name, the most this run may spend on that service, in USD.
    pub caps_usd: BTreeMap<String, f64>,
    /// Whether the validator believes the miner linked its own API key.
    /// The gateway does not decide by it: the key it has on file for the
    /// miner and service is what pays, and the higher daily cap follows
    /// that key (see the gateway's linked keys). A stale claim can neither put
    /// the operator's key under the linked cap nor stop a miner's own key
    /// from paying. It stays in the signed format as the validator's record.
    pub linked_key: bool,
    /// When the token was minted, in unix seconds.
    pub issued_at: i64,
    /// When the token stops being valid, in unix seconds (exclusive).
    pub expires_at: i64,
    /// The run's as-of instant, in unix seconds: the creation of the event
    /// it forecasts, which is also what the agent's clock reads. The
    /// gateway shows the run nothing published after it (a search's
    /// window is clamped to end there), so a backtest or a probe of past
    /// events cannot look its answer up. Any instant is accepted; it is
    /// usually before `issued_at`.
    pub as_of: i64,
}

/// Why a run token, or a key, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not a token (or key) at all: wrong shape, length,
    /// encoding, or claims that are not the expected JSON.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the trusted public key: forged,
    /// tampered with, or minted by another validator.
    #[error("run token signature does not verify with the trusted public key")]
    BadSignature,
    /// The token's validity ended.
    #[error("run token expired at {expired_at} (unix seconds)")]
    Expired {
        /// The token's `expires_at`, in unix seconds.
        expired_at: i64,
    },
    /// The token was issued further in the future than the allowed clock skew.
    #[error(
        "run token is not yet valid: issued more than {CLOCK_SKEW_SECS} s in the future (check the clocks)"
    )]
    NotYetValid,
    /// The token (or key) is well formed and authentic but its content is
    /// not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
}

fn malformed(what: impl Into<String>) -> TokenError {
    TokenError::Malformed(what.into())
}

fn invalid(what: impl Into<String>) -> TokenError {
    TokenError::Invalid(what.into())
}

/// Mints a run token for `claims`, signed with the validator's `key`.
///
/// The claims are not checked: claims that [`verify`] refuses (a negative
/// or non-finite cap, say) give a token that it refuses.
#[must_use]
pub fn mint(key: &SigningKey, claims: &RunClaims) -> String {
    // Strings, numbers, booleans and a map with string keys: nothing in
    // `RunClaims` can fail to serialise (serde_json writes non-finite
    // floats as `null`, which `verify` then refuses).
    let payload = serde_json::to_vec(claims).expect("RunClaims always serialises to JSON");
    sign_payload(key, &payload)
}

/// Signs arbitrary payload bytes into token text.
fn sign_payload(key: &SigningKey, payload: &[u8]) -> String {
    let signature = key.sign(&signed_message(payload));
    let mut token = URL_SAFE_NO_PAD.encode(payload);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    token
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    [TOKEN_DOMAIN, payload].concat()
}

/// Verifies a run token against the validator's public `key` at time
/// `now_unix` (unix seconds) and returns its claims.
///
/// `token` is the bare token text (no `Bearer ` prefix, no whitespace).
///
/// # Errors
///
/// - [`TokenError::Malformed`]: longer than [`MAX_TOKEN_LEN`], not exactly
///   one `.`, a part that is not unpadded base64url, a signature that is
///   not 64 bytes, or a payload that is not the JSON of [`RunClaims`];
/// - [`TokenError::BadSignature`]: not signed by `key`, or altered since;
/// - [`TokenError::NotYetValid`]: issued more than [`CLOCK_SKEW_SECS`]
///   after `now_unix`;
/// - [`TokenError::Expired`]: `now_unix` is at or after `expires_at`;
/// - [`TokenError::Invalid`]: `expires_at` not after `issued_at`, a cap
///   that is negative or not finite, or an empty `run_id` or `miner`.
pub fn verify(key: &VerifyingKey, token: &str, now_unix: i64) -> Result<RunClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!(
            "run token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let (payload_b64, signature_b64) = token
        .split_once('.')
        .ok_or_else(|| malformed("run token has no '.' between payload and signature"))?;
    if signature_b64.contains('.') {
        return Err(malformed("run token has more than one '.'"));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| malformed("run token payload is not unpadded base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| malformed("run token signature is not unpadded base64url"))?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| malformed("run token signature is not 64 bytes"))?;
    key.verify_strict(&signed_message(&payload), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: RunClaims = serde_json::from_slice(&payload)
        .map_err(|e| malformed(format!("run token claims: {e}")))?;
    check_claims(&claims, now_unix)?;
    Ok(claims)
}

/// How many verified tokens a [`TokenVerifier`] remembers.
pub const VERIFIED_TOKENS_REMEMBERED: usize = 16_384;

/// [`verify`] with a memory: a token whose signature was verified once is
/// not verified again, only its times (which change with the clock) are
/// re-checked. A run makes many gateway calls with one token, and the
/// signature check is most of what a cached answer costs (about 50 µs).
///
/// Only tokens that verified are remembered, keyed by their whole text, so
/// a forged or altered token always meets the full check.
pub struct TokenVerifier {
    key: VerifyingKey,
    verified: quick_cache::sync::Cache<String, std::sync::Arc<RunClaims>>,
}

impl TokenVerifier {
    /// A verifier of tokens signed by `key`.
    #[must_use]
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS_REMEMBERED),
        }
    }

    /// The key tokens must be signed with.
    #[must_use]
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies `token` at `now_unix` as [`verify`] does.
    ///
    /// # Errors
    ///
    /// As [`verify`].
    pub fn verify(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<std::sync::Arc<RunClaims>, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            check_claims(&claims, now_unix)?;
            return Ok(claims);
        }
        let claims = std::sync::Arc::new(verify(&self.key, token, now_unix)?);
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

fn check_claims(claims: &RunClaims, now_unix: i64) -> Result<(), TokenError> {
    if claims.expires_at <= claims.issued_at {
        return Err(invalid("run token expires_at is not after issued_at"));
    }
    if claims.expires_at - claims.issued_at > MAX_TOKEN_LIFETIME_SECS {
        return Err(invalid(format!(
            "run token is valid for more than {MAX_TOKEN_LIFETIME_SECS} s"
        )));
    }
    if claims.issued_at > now_unix.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::NotYetValid);
    }
    if now_unix >= claims.expires_at {
        return Err(TokenError::Expired {
            expired_at: claims.expires_at,
        });
    }
    if let Some((service, _)) = claims
        .caps_usd
        .iter()
        .find(|(_, cap)| !(cap.is_finite() && **cap >= 0.0))
    {
        return Err(invalid(format!(
            "run token cap for service {service:?} is negative or not finite"
        )));
    }
    if claims.run_id.is_empty() {
        return Err(invalid("run token run_id is empty"));
    }
    if claims.miner.is_empty() {
        return Err(invalid("run token miner is empty"));
    }
    Ok(())
}

/// Generates a new Ed25519 signing key from the operating system's random
/// source.
///
/// # Panics
///
/// If the operating system cannot provide random bytes (`getrandom` fails),
/// which leaves no safe way to make a key.
#[must_use]
pub fn generate_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random source failed");
    SigningKey::from_bytes(&seed)
}

/// Encodes a public key as 64 lowercase hex characters.
#[must_use]
pub fn encode_public_key(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Parses a public key from 64 hex characters (surrounding whitespace is
/// ignored), as written by [`encode_public_key`].
///
/// # Errors
///
/// [`TokenError::Malformed`] if the text is not 64 hex characters;
/// [`TokenError::Invalid`] if the bytes are not a point on the curve or are
/// a weak (small-order) key, which no honest key is.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, TokenError> {
    let bytes =
        decode_hex32(text).ok_or_else(|| malformed("public key is not 64 hex characters"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid("public key is not a valid Ed25519 point"))?;
    if key.is_weak() {
        return Err(invalid("public key is a weak (small-order) Ed25519 key"));
    }
    Ok(key)
}

/// Encodes a signing key's 32-byte secret seed as 64 lowercase hex
/// characters, for a key file. The result is a secret.
#[must_use]
pub fn encode_signing_key_hex(key: &SigningKey) -> String {
    hex::encode(key.to_bytes())
}

/// Parses a signing key from its 32-byte secret seed in 64 hex characters
/// (surrounding whitespace, such as a key file's final newline, is
/// ignored), as written by [`encode_signing_key_hex`].
///
/// # Errors
///
/// [`TokenError::Malformed`] if the text is not 64 hex characters; the
/// message never includes the text.
pub fn parse_signing_key_hex(text: &str) -> Result<SigningKey, TokenError> {
    let seed = decode_hex32(text).ok_or_else(|| {
        malformed("signing key is not 64 hex characters (a 32-byte Ed25519 seed)")
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;

    fn claims() -> RunClaims {
        RunClaims {
            run_id: "run-42".into(),
            miner: "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty".into(),
            agent_hash: "ab".repeat(32),
            caps_usd: BTreeMap::from([("llm".to_owned(), 0.05), ("search".to_owned(), 0.01)]),
            linked_key: false,
            issued_at: NOW,
            expires_at: NOW + 600,
            as_of: NOW - 86_400,
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn parts(token: &str) -> (Vec<u8>, Vec<u8>) {
        let (p, s) = token.split_once('.').unwrap();
        (
            URL_SAFE_NO_PAD.decode(p).unwrap(),
            URL_SAFE_NO_PAD.decode(s).unwrap(),
        )
    }

    fn join(payload: &[u8], signature: &[u8]) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn is_malformed(r: Result<RunClaims, TokenError>) -> bool {
        matches!(r, Err(TokenError::Malformed(_)))
    }

    #[test]
    fn round_trip_returns_the_claims() {
        let key = key();
        let c = claims();
        let token = mint(&key, &c);
        assert_eq!(verify(&key.verifying_key(), &token, NOW).unwrap(), c);
        // Valid through the whole window.
        assert_eq!(verify(&key.verifying_key(), &token, NOW + 599).unwrap(), c);
    }

    #[test]
    fn round_trip_keeps_odd_values() {
        let key = generate_key();
        let mut c = claims();
        c.caps_usd = BTreeMap::from([
            ("a \"quoted\" / unicode é service".to_owned(), 0.1 + 0.2),
            ("zero".to_owned(), 0.0),
            ("tiny".to_owned(), 1e-300),
            ("big".to_owned(), 1e300),
        ]);
        c.linked_key = true;
        c.agent_hash = String::new();
        let token = mint(&key, &c);
        assert_eq!(verify(&key.verifying_key(), &token, NOW).unwrap(), c);
    }

    #[test]
    fn payload_is_compact_json_and_signature_is_domain_separated() {
        let key = key();
        let c = claims();
        let token = mint(&key, &c);
        let (payload, signature) = parts(&token);
        assert_eq!(payload, serde_json::to_vec(&c).unwrap());
        assert!(payload.starts_with(br#"{"run_id":"run-42","miner":"#));
        let mut message = b"sooth-run-token-v1\n".to_vec();
        message.extend_from_slice(&payload);
        let signature = Signature::from_slice(&signature).unwrap();
        key.verifying_key()
            .verify_strict(&message, &signature)
            .unwrap();
        // Not a signature over the bare payload.
        assert!(
            key.verifying_key()
                .verify_strict(&payload, &signature)
                .is_err()
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let key = key();
        let (payload, signature) = parts(&mint(&key, &claims()));
        let text = String::from_utf8(payload).unwrap();
        let richer = text.replace("0.05", "50.0");
        assert_ne!(richer, text);
        let token = join(richer.as_bytes(), &signature);
        assert_eq!(
            verify(&key.verifying_key(), &token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature_is_refused() {
        let key = key();
        let (payload, mut signature) = parts(&mint(&key, &claims()));
        for i in [0, 31, 32, 63] {
            signature[i] ^= 1;
            let token = join(&payload, &signature);
            assert_eq!(
                verify(&key.verifying_key(), &token, NOW),
                Err(TokenError::BadSignature)
            );
            signature[i] ^= 1;
        }
        let token = join(&payload, &[0; 64]);
        assert_eq!(
            verify(&key.verifying_key(), &token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn token_from_another_key_is_refused() {
        let other = SigningKey::from_bytes(&[8; 32]);
        let token = mint(&other, &claims());
        assert_eq!(
            verify(&key().verifying_key(), &token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let key = key();
        let token = mint(&key, &claims());
        let expired = Err(TokenError::Expired {
            expired_at: NOW + 600,
        });
        assert_eq!(verify(&key.verifying_key(), &token, NOW + 600), expired);
        assert_eq!(verify(&key.verifying_key(), &token, i64::MAX), expired);
    }

    #[test]
    fn token_from_the_future_is_refused_beyond_skew() {
        let key = key();
        let token = mint(&key, &claims());
        // Within the skew: accepted.
        assert!(verify(&key.verifying_key(), &token, NOW - CLOCK_SKEW_SECS).is_ok());
        assert_eq!(
            verify(&key.verifying_key(), &token, NOW - CLOCK_SKEW_SECS - 1),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            verify(&key.verifying_key(), &token, i64::MIN),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let public = key().verifying_key();
        let sig = URL_SAFE_NO_PAD.encode([0u8; 64]);
        let huge = format!("{}.{sig}", "A".repeat(MAX_TOKEN_LEN));
        let cases = [
            String::new(),
            ".".into(),
            "nodot".into(),
            "a.b.c".into(),
            format!("e30.{sig}.{sig}"),
            format!("not base64!.{sig}"),
            format!("e30.{sig}="), // padding is not allowed
            "e30.AAAA".into(),     // signature of the wrong length
            format!("e30={sig}"),
            format!("Bearer e30.{sig}"),
            huge,
            "\u{0}.\u{0}".into(),
            "é.é".into(),
        ];
        for case in &cases {
            assert!(
                is_malformed(verify(&public, case, NOW)),
                "{:?} gave {:?}",
                case.chars().take(40).collect::<String>(),
                verify(&public, case, NOW)
            );
        }
    }

    #[test]
    fn oversized_token_is_refused_before_decoding() {
        let public = key().verifying_key();
        let err = verify(&public, &"x".repeat(MAX_TOKEN_LEN + 1), NOW).unwrap_err();
        assert_eq!(
            err,
            TokenError::Malformed(format!("run token is longer than {MAX_TOKEN_LEN} bytes"))
        );
    }

    #[test]
    fn negative_cap_is_invalid() {
        let key = key();
        let mut c = claims();
        c.caps_usd.insert("llm".into(), -0.01);
        let err = verify(&key.verifying_key(), &mint(&key, &c), NOW).unwrap_err();
        assert!(
            matches!(err, TokenError::Invalid(ref m) if m.contains("\"llm\"")),
            "{err}"
        );
    }

    #[test]
    fn non_finite_cap_is_refused() {
        // serde_json writes NaN and infinities as `null`, which is not an f64.
        let key = key();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut c = claims();
            c.caps_usd.insert("llm".into(), bad);
            assert!(is_malformed(verify(
                &key.verifying_key(),
                &mint(&key, &c),
                NOW
            )));
        }
        // An out-of-range number in a signed payload.
        let payload = serde_json::to_string(&claims())
            .unwrap()
            .replace("0.05", "1e400");
        let token = sign_payload(&key, payload.as_bytes());
        assert!(is_malformed(verify(&key.verifying_key(), &token, NOW)));
    }

    #[test]
    fn empty_identifiers_are_invalid() {
        let key = key();
        for c in [
            RunClaims {
                run_id: String::new(),
                ..claims()
            },
            RunClaims {
                miner: String::new(),
                ..claims()
            },
        ] {
            let r = verify(&key.verifying_key(), &mint(&key, &c), NOW);
            assert!(matches!(r, Err(TokenError::Invalid(_))), "{r:?}");
        }
    }

    #[test]
    fn expiry_not_after_issue_is_invalid() {
        let key = key();
        let c = RunClaims {
            expires_at: NOW,
            ..claims()
        };
        let r = verify(&key.verifying_key(), &mint(&key, &c), NOW);
        assert!(matches!(r, Err(TokenError::Invalid(_))), "{r:?}");
    }

    #[test]
    fn signed_but_unexpected_json_is_malformed() {
        let key = key();
        let mut value = serde_json::to_value(claims()).unwrap();
        value["admin"] = true.into();
        let unknown_field = serde_json::to_vec(&value).unwrap();
        let cases: [&[u8]; 4] = [&unknown_field, br#"{"run_id":"r"}"#, b"[]", b"not json"];
        for payload in cases {
            let token = sign_payload(&key, payload);
            assert!(is_malformed(verify(&key.verifying_key(), &token, NOW)));
        }
    }

    #[test]
    fn claims_without_an_as_of_instant_are_malformed() {
        let key = key();
        let mut value = serde_json::to_value(claims()).unwrap();
        value.as_object_mut().unwrap().remove("as_of");
        let token = sign_payload(&key, &serde_json::to_vec(&value).unwrap());
        let refused = verify(&key.verifying_key(), &token, NOW);
        assert!(
            matches!(&refused, Err(TokenError::Malformed(m)) if m.contains("as_of")),
            "{refused:?}"
        );
        // The same claims with it verify, and keep it.
        let token = mint(&key, &claims());
        assert_eq!(
            verify(&key.verifying_key(), &token, NOW).unwrap().as_of,
            NOW - 86_400
        );
    }

    #[test]
    fn errors_do_not_echo_the_token() {
        let key = key();
        let token = mint(&SigningKey::from_bytes(&[9; 32]), &claims());
        let (payload_b64, sig_b64) = token.split_once('.').unwrap();
        let variants = [
            token.clone(),
            format!("{payload_b64}."),
            format!("{payload_b64}.{sig_b64}."),
            format!("{payload_b64}!.{sig_b64}"),
        ];
        for variant in &variants {
            let message = verify(&key.verifying_key(), variant, NOW)
                .unwrap_err()
                .to_string();
            assert!(!message.contains(sig_b64), "{message}");
            assert!(!message.contains(payload_b64), "{message}");
        }
    }

    #[test]
    fn public_key_hex_round_trip() {
        let public = key().verifying_key();
        let text = encode_public_key(&public);
        assert_eq!(text.len(), 64);
        assert_eq!(parse_public_key(&text).unwrap(), public);
        assert_eq!(parse_public_key(&format!(" {text}\n")).unwrap(), public);
        assert_eq!(parse_public_key(&text.to_uppercase()).unwrap(), public);
    }

    #[test]
    fn bad_public_keys_are_refused() {
        for text in ["", "abcd", &"zz".repeat(32), &"00".repeat(33)] {
            assert!(
                matches!(parse_public_key(text), Err(TokenError::Malformed(_))),
                "{text}"
            );
        }
        // The identity point (small order) is weak.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            parse_public_key(&hex::encode(identity)),
            Err(TokenError::Invalid(_))
        ));
        // Some 32-byte strings are no point at all.
        let not_a_point = (0u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .unwrap();
        assert!(matches!(
            parse_public_key(&hex::encode(not_a_point)),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn signing_key_hex_round_trip() {
        let key = generate_key();
        let text = encode_signing_key_hex(&key);
        assert_eq!(text.len(), 64);
        let parsed = parse_signing_key_hex(&format!("{text}\n")).unwrap();
        assert_eq!(parsed.to_bytes(), key.to_bytes());
        assert_ne!(generate_key().to_bytes(), key.to_bytes());
    }

    #[test]
    fn bad_signing_key_is_refused_without_echo() {
        let secretish = "ab".repeat(31) + "zz";
        let err = parse_signing_key_hex(&secretish).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)));
        assert!(!err.to_string().contains(&secretish));
        assert!(parse_signing_key_hex(&"ab".repeat(64)).is_err());
    }

    #[test]
    fn the_verifier_remembers_signatures_but_not_times() {
        let key = key();
        let verifier = TokenVerifier::new(key.verifying_key());
        let token = mint(&key, &claims());
        assert_eq!(*verifier.verify(&token, NOW).unwrap(), claims());
        // Remembered, and still expires.
        assert_eq!(*verifier.verify(&token, NOW + 599).unwrap(), claims());
        assert!(matches!(
            verifier.verify(&token, NOW + 600),
            Err(TokenError::Expired { .. })
        ));
        assert!(matches!(
            verifier.verify(&token, NOW - CLOCK_SKEW_SECS - 1),
            Err(TokenError::NotYetValid)
        ));
        // One flipped character of a remembered token is a new token.
        let (payload, mut signature) = parts(&token);
        signature[0] ^= 1;
        assert!(matches!(
            verifier.verify(&join(&payload, &signature), NOW),
            Err(TokenError::BadSignature)
        ));
        // Another validator's verifier knows nothing of it.
        let other = TokenVerifier::new(generate_key().verifying_key());
        assert!(matches!(
            other.verify(&token, NOW),
            Err(TokenError::BadSignature)
        ));
    }
}
