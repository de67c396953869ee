//! Outbound request signing: every request the gateway sends to an
//! upstream service says which validator made it and for which miner, in a
//! form that a central gateway (or the upstream itself) can verify.
//!
//! # Headers
//!
//! Each upstream request carries, besides the upstream's own API key:
//!
//! | header | value |
//! |---|---|
//! | `x-sooth-signer` | the validator's Ed25519 public key: 64 lowercase hex characters |
//! | `x-sooth-timestamp` | when the request was signed: unix seconds, in decimal without sign or leading zeros |
//! | `x-sooth-nonce` | 16 fresh random bytes: 32 lowercase hex characters |
//! | `x-sooth-miner` | the hotkey of the miner the request is made for |
//! | `x-sooth-signature` | the Ed25519 signature of the message below: 128 lowercase hex characters |
//!
//! # Signed message
//!
//! ```text
//! "sooth-upstream-v1\n" || hex(sha256(body)) || "\n" || nonce || "\n" || timestamp || "\n" || miner
//! ```
//!
//! where `||` is concatenation, `"\n"` a single line feed (0x0a), `hex` is
//! lowercase, `body` is the exact bytes of the HTTP request body as sent
//! (empty when there is none), and `nonce`, `timestamp` and `miner` are the
//! header values exactly as sent. For an empty body, nonce
//! `000102030405060708090a0b0c0d0e0f`, timestamp `1767225600` and miner
//! `5F...`, the message is these bytes (shown with the line feeds as line
//! breaks):
//!
//! ```text
//! sooth-upstream-v1
//! e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
//! 000102030405060708090a0b0c0d0e0f
//! 1767225600
//! 5F...
//! ```
//!
//! Every field before the miner has a fixed form, and the miner is last, so
//! the message cannot be read two ways.
//!
//! # Verifying
//!
//! [`verify_request`] does the following, and a verifier in another
//! language does the same:
//!
//! 1. All five headers are present and well formed: the signer 64 hex
//!    characters, the timestamp a decimal integer in the form above, the
//!    nonce 32 lowercase hex characters, the miner non-empty visible ASCII
//!    (0x21 to 0x7e), the signature 128 hex characters.
//! 2. The signer is one of the verifier's trusted validator keys.
//! 3. The signature verifies over the message rebuilt from the body
//!    received and the header values, with strict Ed25519 verification
//!    (RFC 8032, refusing small-order keys and non-canonical signatures).
//! 4. The timestamp is within `max_skew_secs` of the verifier's clock,
//!    either way.
//! 5. **Replay** (the verifier's job; [`verify_request`] is stateless): the
//!    verifier remembers each accepted `(signer, nonce)` and refuses it
//!    again. An entry may be forgotten once `timestamp + max_skew_secs` has
//!    passed, since step 4 refuses the request from then on; keeping each
//!    nonce for `2 × max_skew_secs` after it was first seen is always
//!    enough.
//!
//! The signature covers the body, the miner, the nonce and the timestamp
//! only: not the method, the path, the host or other headers (the API key
//! among them). It attributes a body to a validator and a miner; the nonce
//! store stops one signed request from being replayed, to the same or
//! another endpoint.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The domain-separation prefix of the signed message.
pub const UPSTREAM_DOMAIN: &[u8] = b"sooth-upstream-v1\n";
/// The header naming the signing validator's public key (hex).
pub const HEADER_SIGNER: &str = "x-sooth-signer";
/// The header carrying the signing time (unix seconds).
pub const HEADER_TIMESTAMP: &str = "x-sooth-timestamp";
/// The header carrying the request's random nonce (32 hex characters).
pub const HEADER_NONCE: &str = "x-sooth-nonce";
/// The header naming the miner (hotkey) the request is made for.
pub const HEADER_MINER: &str = "x-sooth-miner";
/// The header carrying the signature (hex).
pub const HEADER_SIGNATURE: &str = "x-sooth-signature";

/// Signs outbound requests with a validator's Ed25519 key.
#[derive(Clone)]
pub struct RequestSigner {
    key: SigningKey,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl RequestSigner {
    /// A signer with the validator's key.
    #[must_use]
    pub fn new(key: SigningKey) -> Self {
        Self { key }
    }

    /// The validator's public key, as sent in `x-sooth-signer`: 64 lowercase
    /// hex characters.
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs a request with `body` (the exact bytes to be sent) made for
    /// `miner` at `now_unix` (unix seconds), with a fresh random nonce.
    ///
    /// `miner` must be visible ASCII, as a hotkey is; anything else cannot
    /// be sent in a header, and [`verify_request`] refuses it.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes for the nonce.
    #[must_use]
    pub fn sign(&self, body: &[u8], miner: &str, now_unix: i64) -> SignedHeaders {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        self.sign_with_nonce(body, miner, now_unix, hex::encode(nonce))
    }

    fn sign_with_nonce(
        &self,
        body: &[u8],
        miner: &str,
        now_unix: i64,
        nonce: String,
    ) -> SignedHeaders {
        let timestamp = now_unix.to_string();
        let signature = self
            .key
            .sign(&signed_message(body, &nonce, &timestamp, miner));
        SignedHeaders {
            signer: self.public_key_hex(),
            timestamp,
            nonce,
            miner: miner.to_owned(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// The attribution headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-sooth-signer`: the validator's public key, hex.
    pub signer: String,
    /// `x-sooth-timestamp`: unix seconds, decimal.
    pub timestamp: String,
    /// `x-sooth-nonce`: 32 random lowercase hex characters.
    pub nonce: String,
    /// `x-sooth-miner`: the miner's hotkey.
    pub miner: String,
    /// `x-sooth-signature`: the Ed25519 signature, hex.
    pub signature: String,
}

impl SignedHeaders {
    /// The headers as `(name, value)` pairs, names in lowercase.
    #[must_use]
    pub fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            (HEADER_SIGNER, &self.signer),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_MINER, &self.miner),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

/// What a verified request says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The trusted validator key that signed it.
    pub signer: VerifyingKey,
    /// The miner it was made for.
    pub miner: String,
    /// Its nonce: remember it (with the signer) until `timestamp` plus the
    /// allowed skew has passed, and refuse it if it comes again.
    pub nonce: String,
    /// When it was signed, in unix seconds.
    pub timestamp: i64,
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A signing header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A signing header does not have the required form.
    #[error("malformed header {0}")]
    Malformed(&'static str),
    /// The signer is not one of the trusted validator keys.
    #[error("request signer is not a trusted validator key")]
    UnknownSigner,
    /// The signature does not match the body and headers.
    #[error("request signature does not verify")]
    BadSignature,
    /// The signature is genuine but the timestamp is outside the allowed skew.
    #[error(
        "request timestamp is {skew_secs} s from the verifier's clock, beyond the allowed skew"
    )]
    Stale {
        /// The verifier's time minus the request's timestamp, in seconds:
        /// positive when the request is old, negative when from the future.
        skew_secs: i64,
    },
}

/// Verifies a signed request received with `body`, as described in the
/// [module documentation](self), against the `trusted` validator keys at
/// `now_unix`, allowing the timestamp to differ from it by `max_skew_secs`
/// either way.
///
/// `headers` returns a header's value given its lowercase name (look it up
/// case-insensitively, as HTTP names are). This function keeps no state:
/// the caller must refuse a repeated `(signer, nonce)`, see
/// [`VerifiedRequest::nonce`].
///
/// # Errors
///
/// - [`SignatureError::MissingHeader`]: a signing header is absent;
/// - [`SignatureError::Malformed`]: a signing header has the wrong form;
/// - [`SignatureError::UnknownSigner`]: the signer is not in `trusted`;
/// - [`SignatureError::BadSignature`]: the signature does not cover this
///   body, miner, nonce and timestamp;
/// - [`SignatureError::Stale`]: the timestamp is more than `max_skew_secs`
///   from `now_unix`.
pub fn verify_request(
    headers: impl Fn(&str) -> Option<String>,
    body: &[u8],
    trusted: &[VerifyingKey],
    now_unix: i64,
    max_skew_secs: i64,
) -> Result<VerifiedRequest, SignatureError> {
    let get = |name: &'static str| headers(name).ok_or(SignatureError::MissingHeader(name));
    let signer = get(HEADER_SIGNER)?;
    let timestamp_text = get(HEADER_TIMESTAMP)?;
    let nonce = get(HEADER_NONCE)?;
    let miner = get(HEADER_MINER)?;
    let signature = get(HEADER_SIGNATURE)?;

    let mut signer_bytes = [0u8; 32];
    hex::decode_to_slice(&signer, &mut signer_bytes)
        .map_err(|_| SignatureError::Malformed(HEADER_SIGNER))?;
    let timestamp = timestamp_text
        .parse::<i64>()
        .ok()
        .filter(|t| t.to_string() == timestamp_text)
        .ok_or(SignatureError::Malformed(HEADER_TIMESTAMP))?;
    let nonce_ok = nonce.len() == 32
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !nonce_ok {
        return Err(SignatureError::Malformed(HEADER_NONCE));
    }
    if miner.is_empty() || !miner.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignatureError::Malformed(HEADER_MINER));
    }
    let mut signature_bytes = [0u8; 64];
    hex::decode_to_slice(&signature, &mut signature_bytes)
        .map_err(|_| SignatureError::Malformed(HEADER_SIGNATURE))?;
    let signature = Signature::from_bytes(&signature_bytes);

    let signer = trusted
        .iter()
        .find(|key| key.as_bytes() == &signer_bytes)
        .ok_or(SignatureError::UnknownSigner)?;
    signer
        .verify_strict(
            &signed_message(body, &nonce, &timestamp_text, &miner),
            &signature,
        )
        .map_err(|_| SignatureError::BadSignature)?;

    let skew_secs = now_unix.saturating_sub(timestamp);
    if skew_secs.saturating_abs() > max_skew_secs.max(0) {
        return Err(SignatureError::Stale { skew_secs });
    }
    Ok(VerifiedRequest {
        signer: *signer,
        miner,
        nonce,
        timestamp,
    })
}

/// The message a request's signature covers (see the module documentation).
fn signed_message(body: &[u8], nonce: &str, timestamp: &str, miner: &str) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    [
        UPSTREAM_DOMAIN,
        body_hash.as_bytes(),
        b"\n",
        nonce.as_bytes(),
        b"\n",
        timestamp.as_bytes(),
        b"\n",
        miner.as_bytes(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const NOW: i64 = 1_767_225_600;
    const SKEW: i64 = 300;
    const MINER: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const BODY: &[u8] = br#"{"model":"org/Model","messages":[{"role":"user","content":"hi"}]}"#;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn signer() -> RequestSigner {
        RequestSigner::new(key())
    }

    fn trusted() -> Vec<VerifyingKey> {
        vec![
            SigningKey::from_bytes(&[4; 32]).verifying_key(),
            key().verifying_key(),
        ]
    }

    fn header_map(signed: &SignedHeaders) -> HashMap<String, String> {
        signed
            .pairs()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn check(
        map: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<VerifiedRequest, SignatureError> {
        verify_request(|name| map.get(name).cloned(), body, &trusted(), NOW, SKEW)
    }

    #[test]
    fn round_trip() {
        let signed = signer().sign(BODY, MINER, NOW);
        let verified = check(&header_map(&signed), BODY).unwrap();
        assert_eq!(
            verified,
            VerifiedRequest {
                signer: key().verifying_key(),
                miner: MINER.to_owned(),
                nonce: signed.nonce.clone(),
                timestamp: NOW,
            }
        );
    }

    #[test]
    fn empty_body_and_negative_time_round_trip() {
        let signed = signer().sign(b"", MINER, -5);
        let map = header_map(&signed);
        let verified =
            verify_request(|name| map.get(name).cloned(), b"", &trusted(), 0, 5).unwrap();
        assert_eq!(verified.timestamp, -5);
    }

    #[test]
    fn headers_have_the_documented_form() {
        let signed = signer().sign(BODY, MINER, NOW);
        let names: Vec<&str> = signed.pairs().iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "x-sooth-signer",
                "x-sooth-timestamp",
                "x-sooth-nonce",
                "x-sooth-miner",
                "x-sooth-signature"
            ]
        );
        let lower_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        assert!(lower_hex(&signed.signer, 64));
        assert_eq!(signed.signer, signer().public_key_hex());
        assert_eq!(signed.timestamp, "1767225600");
        assert!(lower_hex(&signed.nonce, 32));
        assert_eq!(signed.miner, MINER);
        assert!(lower_hex(&signed.signature, 128));
    }

    #[test]
    fn nonces_are_fresh() {
        let signer = signer();
        let a = signer.sign(BODY, MINER, NOW);
        let b = signer.sign(BODY, MINER, NOW);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.signature, b.signature);
    }

    /// An independent verifier written from the module documentation only.
    #[test]
    fn documented_scheme_verifies() {
        let signed = signer().sign(BODY, MINER, NOW);
        let mut message = b"sooth-upstream-v1\n".to_vec();
        message.extend_from_slice(hex::encode(Sha256::digest(BODY)).as_bytes());
        message.extend_from_slice(
            format!("\n{}\n{}\n{}", signed.nonce, signed.timestamp, signed.miner).as_bytes(),
        );
        let mut public = [0u8; 32];
        hex::decode_to_slice(&signed.signer, &mut public).unwrap();
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&signed.signature, &mut signature).unwrap();
        VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify_strict(&message, &Signature::from_bytes(&signature))
            .unwrap();
    }

    #[test]
    fn documented_example_message() {
        let message = signed_message(
            b"",
            "000102030405060708090a0b0c0d0e0f",
            "1767225600",
            "5F...",
        );
        assert_eq!(
            message,
            b"sooth-upstream-v1\n\
              e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
              000102030405060708090a0b0c0d0e0f\n\
              1767225600\n\
              5F..."
        );
    }

    #[test]
    fn changed_body_is_refused() {
        let map = header_map(&signer().sign(BODY, MINER, NOW));
        let mut other = BODY.to_vec();
        other.push(b' ');
        assert_eq!(check(&map, &other), Err(SignatureError::BadSignature));
        assert_eq!(check(&map, b""), Err(SignatureError::BadSignature));
    }

    #[test]
    fn changed_miner_is_refused() {
        let mut map = header_map(&signer().sign(BODY, MINER, NOW));
        map.insert(
            HEADER_MINER.into(),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY".into(),
        );
        assert_eq!(check(&map, BODY), Err(SignatureError::BadSignature));
    }

    #[test]
    fn changed_nonce_is_refused() {
        let signed = signer().sign(BODY, MINER, NOW);
        let mut map = header_map(&signed);
        map.insert(HEADER_NONCE.into(), "0".repeat(32));
        assert_eq!(check(&map, BODY), Err(SignatureError::BadSignature));
    }

    #[test]
    fn changed_timestamp_is_refused() {
        let mut map = header_map(&signer().sign(BODY, MINER, NOW));
        map.insert(HEADER_TIMESTAMP.into(), (NOW + 1).to_string());
        assert_eq!(check(&map, BODY), Err(SignatureError::BadSignature));
    }

    #[test]
    fn signature_for_another_request_is_refused() {
        let signer = signer();
        let mut map = header_map(&signer.sign(BODY, MINER, NOW));
        let other = signer.sign(b"{}", MINER, NOW);
        map.insert(HEADER_SIGNATURE.into(), other.signature);
        assert_eq!(check(&map, BODY), Err(SignatureError::BadSignature));
    }

    #[test]
    fn unknown_signer_is_refused() {
        let stranger = RequestSigner::new(SigningKey::from_bytes(&[5; 32]));
        let map = header_map(&stranger.sign(BODY, MINER, NOW));
        assert_eq!(check(&map, BODY), Err(SignatureError::UnknownSigner));
        // Claiming a trusted key with a stranger's signature does not help.
        let mut map = map;
        map.insert(HEADER_SIGNER.into(), signer().public_key_hex());
        assert_eq!(check(&map, BODY), Err(SignatureError::BadSignature));
        // Nobody is trusted.
        let map = header_map(&signer().sign(BODY, MINER, NOW));
        assert_eq!(
            verify_request(|name| map.get(name).cloned(), BODY, &[], NOW, SKEW),
            Err(SignatureError::UnknownSigner)
        );
    }

    #[test]
    fn stale_requests_are_refused() {
        let signer = signer();
        for (signed_at, ok) in [
            (NOW - SKEW, true),
            (NOW + SKEW, true),
            (NOW - SKEW - 1, false),
            (NOW + SKEW + 1, false),
            (i64::MIN, false),
            (i64::MAX, false),
        ] {
            let map = header_map(&signer.sign(BODY, MINER, signed_at));
            let result = check(&map, BODY);
            if ok {
                assert!(result.is_ok(), "{signed_at}: {result:?}");
            } else {
                assert_eq!(
                    result,
                    Err(SignatureError::Stale {
                        skew_secs: NOW.saturating_sub(signed_at)
                    }),
                    "{signed_at}"
                );
            }
        }
    }

    #[test]
    fn negative_skew_allowance_means_exact_time() {
        let map = header_map(&signer().sign(BODY, MINER, NOW));
        let verify =
            |skew| verify_request(|name| map.get(name).cloned(), BODY, &trusted(), NOW, skew);
        assert!(verify(0).is_ok());
        assert!(verify(-10).is_ok());
    }

    #[test]
    fn missing_headers_are_named() {
        let full = header_map(&signer().sign(BODY, MINER, NOW));
        for name in [
            HEADER_SIGNER,
            HEADER_TIMESTAMP,
            HEADER_NONCE,
            HEADER_MINER,
            HEADER_SIGNATURE,
        ] {
            let mut map = full.clone();
            map.remove(name);
            assert_eq!(check(&map, BODY), Err(SignatureError::MissingHeader(name)));
        }
        assert_eq!(
            verify_request(|_| None, BODY, &trusted(), NOW, SKEW),
            Err(SignatureError::MissingHeader(HEADER_SIGNER))
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let full = header_map(&signer().sign(BODY, MINER, NOW));
        let signer_hex = full[HEADER_SIGNER].clone();
        let signature_hex = full[HEADER_SIGNATURE].clone();
        let cases: Vec<(&'static str, String)> = vec![
            (HEADER_SIGNER, String::new()),
            (HEADER_SIGNER, "zz".repeat(32)),
            (HEADER_SIGNER, signer_hex[..62].to_owned()),
            (HEADER_SIGNER, format!("{signer_hex}00")),
            (HEADER_TIMESTAMP, String::new()),
            (HEADER_TIMESTAMP, "soon".into()),
            (HEADER_TIMESTAMP, format!("+{NOW}")),
            (HEADER_TIMESTAMP, format!("0{NOW}")),
            (HEADER_TIMESTAMP, format!(" {NOW}")),
            (HEADER_TIMESTAMP, "1.5".into()),
            (HEADER_TIMESTAMP, "99999999999999999999".into()),
            (HEADER_NONCE, "abc".into()),
            (HEADER_NONCE, "g".repeat(32)),
            (HEADER_NONCE, "A".repeat(32)),
            (HEADER_NONCE, "0".repeat(33)),
            (HEADER_MINER, String::new()),
            (HEADER_MINER, "two words".into()),
            (HEADER_MINER, "line\nbreak".into()),
            (HEADER_MINER, "é".into()),
            (HEADER_SIGNATURE, String::new()),
            (HEADER_SIGNATURE, "xy".repeat(64)),
            (HEADER_SIGNATURE, signature_hex[..126].to_owned()),
        ];
        for (name, value) in cases {
            let mut map = full.clone();
            map.insert(name.to_owned(), value.clone());
            assert_eq!(
                check(&map, BODY),
                Err(SignatureError::Malformed(name)),
                "{name}: {value:?}"
            );
        }
    }

    #[test]
    fn uppercase_hex_key_and_signature_are_accepted() {
        let mut map = header_map(&signer().sign(BODY, MINER, NOW));
        for name in [HEADER_SIGNER, HEADER_SIGNATURE] {
            let upper = map[name].to_uppercase();
            map.insert(name.to_owned(), upper);
        }
        assert!(check(&map, BODY).is_ok());
    }

    #[test]
    fn debug_does_not_show_the_secret_key() {
        let shown = format!("{:?}", signer());
        assert!(shown.contains(&signer().public_key_hex()));
        assert!(!shown.contains(&hex::encode(key().to_bytes())));
        assert!(!shown.contains("[3, 3"));
    }
}
