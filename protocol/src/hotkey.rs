//! A miner's identity: its hotkey, the public key every miner request is
//! signed with, and the secret half a miner keeps.
//!
//! # Schemes and text forms
//!
//! | scheme | signatures | canonical text |
//! |---|---|---|
//! | `ed25519` | RFC 8032 Ed25519, verified strictly (no small-order keys, no malleable signatures) | the 32-byte public key as 64 lowercase hex characters |
//! | `sr25519` | schnorrkel on Ristretto255 with the signing context `substrate`, as substrate and bittensor keypairs sign | the [SS58](crate::ss58) address with substrate's generic prefix 42 (`5...`) |
//!
//! [`Hotkey::parse`] reads 64 hex characters (either case) as an ed25519
//! key and anything else as an SS58 address of an sr25519 key, with any
//! single-byte network prefix; [`Hotkey`]'s `Display` writes the canonical
//! text, so an address with another prefix comes back with prefix 42.
//!
//! # Secret keys
//!
//! A [`SecretHotkey`] is made from a 32-byte seed: for ed25519 the RFC 8032
//! secret key; for sr25519 the schnorrkel mini secret key, expanded to a
//! keypair the way substrate expands a seed (`ExpansionMode::Ed25519`), so
//! the seed of a substrate or bittensor sr25519 key (its `secretSeed`) gives
//! the same public key here. Key files are in [`crate::hotkey_file`].

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ss58::{SS58_GENERIC_PREFIX, Ss58Error, decode_ss58, encode_ss58};

/// The signing context of sr25519 signatures, as substrate uses it.
pub const SR25519_SIGNING_CONTEXT: &[u8] = b"substrate";

/// The signature scheme of a hotkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HotkeyScheme {
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// Sr25519: schnorrkel signatures on Ristretto255, as substrate uses them.
    Sr25519,
}

impl HotkeyScheme {
    /// The scheme's name: `ed25519` or `sr25519`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Sr25519 => "sr25519",
        }
    }
}

impl fmt::Display for HotkeyScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HotkeyScheme {
    type Err = HotkeyError;

    /// Reads `ed25519` or `sr25519`, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("ed25519") {
            Ok(Self::Ed25519)
        } else if text.eq_ignore_ascii_case("sr25519") {
            Ok(Self::Sr25519)
        } else {
            Err(HotkeyError::UnknownScheme)
        }
    }
}

/// Why text (or bytes) is not a hotkey. The messages never repeat the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotkeyError {
    /// The text is empty.
    #[error("the hotkey is empty")]
    Empty,
    /// The text is hex digits only but not 64 of them.
    #[error(
        "an ed25519 hotkey is 64 hex characters (32 bytes); this one has {len} (and is not an SS58 address either)"
    )]
    HexLength {
        /// Its length in characters.
        len: usize,
    },
    /// The text is not 64 hex characters, and not an SS58 address.
    #[error("the hotkey is neither 64 hex characters (ed25519) nor an SS58 address (sr25519)")]
    Ss58(#[from] Ss58Error),
    /// The bytes are not a usable public key of the scheme.
    #[error("the hotkey is not a valid {scheme} public key: {reason}")]
    InvalidKey {
        /// The scheme the key was read as.
        scheme: HotkeyScheme,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A scheme name other than `ed25519` or `sr25519`.
    #[error("unknown hotkey scheme (expected ed25519 or sr25519)")]
    UnknownScheme,
}

/// A signature that does not verify with a hotkey: forged, made by another
/// key, over another message, or not a signature of the hotkey's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not verify with the hotkey")]
pub struct HotkeySignatureError;

/// A miner's public identity: a public key and its scheme.
///
/// Only valid keys are held: an ed25519 key is a curve point that is not of
/// small order, an sr25519 key a Ristretto point other than the identity
/// (anyone could sign for either). `Display` and serde use the canonical
/// text (see the [module documentation](self)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hotkey {
    scheme: HotkeyScheme,
    public: [u8; 32],
}

impl Hotkey {
    /// The hotkey of scheme `scheme` with the 32-byte public key `public`.
    ///
    /// # Errors
    ///
    /// [`HotkeyError::InvalidKey`] if the bytes are not a valid public key
    /// of the scheme, or are one anybody could sign for (a small-order
    /// ed25519 point, the sr25519 identity).
    pub fn from_public_bytes(scheme: HotkeyScheme, public: [u8; 32]) -> Result<Self, HotkeyError> {
        let invalid = |reason| HotkeyError::InvalidKey { scheme, reason };
        match scheme {
            HotkeyScheme::Ed25519 => {
                let key = VerifyingKey::from_bytes(&public)
                    .map_err(|_| invalid("not a point on the curve"))?;
                if key.is_weak() {
                    return Err(invalid("a weak (small-order) point"));
                }
            }
            HotkeyScheme::Sr25519 => {
                schnorrkel::PublicKey::from_bytes(&public)
                    .map_err(|_| invalid("not a Ristretto255 point encoding"))?;
                if public == [0; 32] {
                    return Err(invalid("the identity point"));
                }
            }
        }
        Ok(Self { scheme, public })
    }

    /// Reads a hotkey from its text: 64 hex characters (either case) are an
    /// ed25519 key, anything else must be the SS58 address (any single-byte
    /// prefix) of an sr25519 key. Surrounding whitespace is not allowed.
    ///
    /// # Errors
    ///
    /// [`HotkeyError::Empty`] for empty text; [`HotkeyError::HexLength`] for
    /// hex digits of another length; [`HotkeyError::Ss58`] for text that is
    /// not an SS58 address (saying whether it is too long, not base58, of
    /// the wrong length or prefix, or fails the checksum);
    /// [`HotkeyError::InvalidKey`] as [`Hotkey::from_public_bytes`].
    pub fn parse(text: &str) -> Result<Self, HotkeyError> {
        if text.is_empty() {
            return Err(HotkeyError::Empty);
        }
        let all_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
        if all_hex && text.len() == 64 {
            let mut public = [0u8; 32];
            hex::decode_to_slice(text, &mut public)
                .map_err(|_| HotkeyError::HexLength { len: text.len() })?;
            return Self::from_public_bytes(HotkeyScheme::Ed25519, public);
        }
        match decode_ss58(text) {
            Ok((_prefix, public)) => Self::from_public_bytes(HotkeyScheme::Sr25519, public),
            Err(_) if all_hex => Err(HotkeyError::HexLength { len: text.len() }),
            Err(error) => Err(HotkeyError::Ss58(error)),
        }
    }

    /// The key's scheme.
    #[must_use]
    pub fn scheme(&self) -> HotkeyScheme {
        self.scheme
    }

    /// The 32-byte public key.
    #[must_use]
    pub fn public_bytes(&self) -> &[u8; 32] {
        &self.public
    }

    /// The public key as an SS58 address with network `prefix`, whatever
    /// the scheme (substrate writes ed25519 accounts this way too; the
    /// address does not say the scheme).
    ///
    /// # Errors
    ///
    /// [`Ss58Error::Prefix`] if `prefix` is 64 or more.
    pub fn to_ss58(&self, prefix: u8) -> Result<String, Ss58Error> {
        encode_ss58(prefix, &self.public)
    }

    /// Verifies `signature` over `message` with this key: strict Ed25519
    /// verification, or sr25519 in the `substrate` signing context.
    ///
    /// # Errors
    ///
    /// [`HotkeySignatureError`] if the signature is not 64 bytes, is not a
    /// signature of the scheme, or does not verify.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), HotkeySignatureError> {
        match self.scheme {
            HotkeyScheme::Ed25519 => {
                let key =
                    VerifyingKey::from_bytes(&self.public).map_err(|_| HotkeySignatureError)?;
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| HotkeySignatureError)?;
                key.verify_strict(message, &signature)
                    .map_err(|_| HotkeySignatureError)
            }
            HotkeyScheme::Sr25519 => {
                let key = schnorrkel::PublicKey::from_bytes(&self.public)
                    .map_err(|_| HotkeySignatureError)?;
                let signature = schnorrkel::Signature::from_bytes(signature)
                    .map_err(|_| HotkeySignatureError)?;
                key.verify_simple(SR25519_SIGNING_CONTEXT, message, &signature)
                    .map_err(|_| HotkeySignatureError)
            }
        }
    }
}

impl HotkeyError {
    /// The error with its cause, in one line (for a message that carries no source of its
    /// own, such as a header's problem).
    #[must_use]
    pub fn with_cause(&self) -> String {
        match std::error::Error::source(self) {
            Some(cause) => format!("{self}: {cause}"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            HotkeyScheme::Ed25519 => f.write_str(&hex::encode(self.public)),
            HotkeyScheme::Sr25519 => match encode_ss58(SS58_GENERIC_PREFIX, &self.public) {
                Ok(address) => f.write_str(&address),
                Err(_) => Err(fmt::Error),
            },
        }
    }
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hotkey({}:{self})", self.scheme)
    }
}

impl FromStr for Hotkey {
    type Err = HotkeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Hotkey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hotkey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A miner's secret hotkey: what signs its requests. `Debug` shows the
/// public key only.
#[derive(Clone)]
pub struct SecretHotkey {
    inner: Secret,
}

#[derive(Clone)]
enum Secret {
    Ed25519(SigningKey),
    Sr25519 {
        mini: MiniSecretKey,
        keypair: Keypair,
    },
}

impl SecretHotkey {
    /// A new secret hotkey of `scheme` from the operating system's random
    /// source.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes, which leaves no
    /// safe way to make a key.
    #[must_use]
    pub fn generate(scheme: HotkeyScheme) -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source failed");
        Self::from_seed(scheme, &seed)
    }

    /// The secret hotkey of `scheme` with the 32-byte `seed`: the Ed25519
    /// secret key, or the sr25519 mini secret key (expanded as substrate
    /// does, see the [module documentation](self)).
    #[must_use]
    pub fn from_seed(scheme: HotkeyScheme, seed: &[u8; 32]) -> Self {
        let inner = match scheme {
            HotkeyScheme::Ed25519 => Secret::Ed25519(SigningKey::from_bytes(seed)),
            HotkeyScheme::Sr25519 => {
                let mini = MiniSecretKey::from_bytes(seed)
                    .expect("any 32 bytes are a schnorrkel mini secret key");
                let keypair = mini.expand_to_keypair(ExpansionMode::Ed25519);
                Secret::Sr25519 { mini, keypair }
            }
        };
        Self { inner }
    }

    /// The 32-byte seed this key was made from. The result is a secret.
    #[must_use]
    pub(crate) fn seed(&self) -> [u8; 32] {
        match &self.inner {
            Secret::Ed25519(key) => key.to_bytes(),
            Secret::Sr25519 { mini, .. } => mini.to_bytes(),
        }
    }

    /// The key's scheme.
    #[must_use]
    pub fn scheme(&self) -> HotkeyScheme {
        match self.inner {
            Secret::Ed25519(_) => HotkeyScheme::Ed25519,
            Secret::Sr25519 { .. } => HotkeyScheme::Sr25519,
        }
    }

    /// The public hotkey.
    #[must_use]
    pub fn public(&self) -> Hotkey {
        let public = match &self.inner {
            Secret::Ed25519(key) => key.verifying_key().to_bytes(),
            Secret::Sr25519 { keypair, .. } => keypair.public.to_bytes(),
        };
        Hotkey {
            scheme: self.scheme(),
            public,
        }
    }

    /// Signs `message`: a 64-byte Ed25519 signature (deterministic), or a
    /// 64-byte sr25519 signature in the `substrate` context (randomised, so
    /// two signatures of one message differ). [`Hotkey::verify`] accepts it.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match &self.inner {
            Secret::Ed25519(key) => key.sign(message).to_bytes(),
            Secret::Sr25519 { keypair, .. } => keypair
                .sign_simple(SR25519_SIGNING_CONTEXT, message)
                .to_bytes(),
        }
    }
}

impl fmt::Debug for SecretHotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHotkey")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const ALICE_PUBLIC: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const BOB_PUBLIC: &str = "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48";

    fn bytes32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).expect("hex");
        out
    }

    fn bytes64(text: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex::decode_to_slice(text, &mut out).expect("hex");
        out
    }

    #[test]
    fn ss58_addresses_are_sr25519_hotkeys() {
        for (address, public) in [(ALICE, ALICE_PUBLIC), (BOB, BOB_PUBLIC)] {
            let hotkey = Hotkey::parse(address).expect("a hotkey");
            assert_eq!(hotkey.scheme(), HotkeyScheme::Sr25519);
            assert_eq!(hotkey.public_bytes(), &bytes32(public));
            assert_eq!(hotkey.to_string(), address);
        }
        // Another network's address of the same key: the canonical text is
        // the generic one.
        let polkadot =
            Hotkey::parse("15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5").expect("a hotkey");
        assert_eq!(polkadot.to_string(), ALICE);
        assert_eq!(
            polkadot.to_ss58(0).as_deref(),
            Ok("15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5")
        );
    }

    #[test]
    fn hex_is_an_ed25519_hotkey_written_lowercase() {
        let public = SecretHotkey::from_seed(HotkeyScheme::Ed25519, &[9; 32]).public();
        let text = public.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(Hotkey::parse(&text), Ok(public));
        assert_eq!(Hotkey::parse(&text.to_uppercase()), Ok(public));
        assert_eq!(format!("{public:?}"), format!("Hotkey(ed25519:{text})"));
    }

    #[test]
    fn bad_text_is_refused_saying_why() {
        assert_eq!(Hotkey::parse(""), Err(HotkeyError::Empty));
        assert_eq!(
            Hotkey::parse(&"ab".repeat(31)),
            Err(HotkeyError::HexLength { len: 62 })
        );
        assert_eq!(
            Hotkey::parse(&"0".repeat(66)),
            Err(HotkeyError::HexLength { len: 66 })
        );
        assert_eq!(
            Hotkey::parse(&format!("{}g", &ALICE_PUBLIC[..63])),
            Err(HotkeyError::Ss58(Ss58Error::Base58))
        );
        assert_eq!(
            Hotkey::parse(&format!("{ALICE_PUBLIC} ")),
            Err(HotkeyError::Ss58(Ss58Error::TooLong { len: 65 }))
        );
        assert_eq!(
            Hotkey::parse(&format!("{}Z", &ALICE[..47])),
            Err(HotkeyError::Ss58(Ss58Error::Checksum))
        );
        assert_eq!(
            Hotkey::parse("miner-7"),
            Err(HotkeyError::Ss58(Ss58Error::Base58))
        );
        assert_eq!(
            Hotkey::parse(&"z".repeat(100)),
            Err(HotkeyError::Ss58(Ss58Error::TooLong { len: 100 }))
        );
        let message = Hotkey::parse(&format!("{}Z", &ALICE[..47]))
            .expect_err("refused")
            .with_cause();
        assert!(message.contains("checksum"), "{message}");
    }

    #[test]
    fn keys_anybody_could_sign_for_are_refused() {
        // The ed25519 identity and a point of order 8 (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for weak in [identity, [0; 32]] {
            assert!(matches!(
                Hotkey::from_public_bytes(HotkeyScheme::Ed25519, weak),
                Err(HotkeyError::InvalidKey { .. })
            ));
        }
        let zero_address = encode_ss58(42, &[0; 32]).expect("address");
        assert!(matches!(
            Hotkey::parse(&zero_address),
            Err(HotkeyError::InvalidKey {
                scheme: HotkeyScheme::Sr25519,
                ..
            })
        ));
        // Not a canonical Ristretto encoding (RFC 9496 A.2's first case).
        assert!(matches!(
            Hotkey::from_public_bytes(
                HotkeyScheme::Sr25519,
                bytes32("00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
            ),
            Err(HotkeyError::InvalidKey { .. })
        ));
    }

    #[test]
    fn schemes_read_and_write_their_names() {
        for scheme in [HotkeyScheme::Ed25519, HotkeyScheme::Sr25519] {
            assert_eq!(scheme.to_string().parse::<HotkeyScheme>(), Ok(scheme));
            let json = serde_json::to_string(&scheme).expect("json");
            assert_eq!(json, format!("\"{scheme}\""));
        }
        assert_eq!("SR25519".parse(), Ok(HotkeyScheme::Sr25519));
        assert_eq!(
            "ecdsa".parse::<HotkeyScheme>(),
            Err(HotkeyError::UnknownScheme)
        );
    }

    #[test]
    fn hotkeys_serialise_as_their_text() {
        let alice = Hotkey::parse(ALICE).expect("a hotkey");
        assert_eq!(
            serde_json::to_string(&alice).expect("json"),
            format!("\"{ALICE}\"")
        );
        let back: Hotkey = serde_json::from_str(&format!("\"{ALICE}\"")).expect("a hotkey");
        assert_eq!(back, alice);
        assert!(serde_json::from_str::<Hotkey>("\"5Grw\"").is_err());
    }

    /// Substrate's sr25519 test vector (`sr_test_vector_should_work` in
    /// sp-core): `Pair::from_seed` of this seed has this public key.
    #[test]
    fn sr25519_seeds_expand_as_substrate_expands_them() {
        let secret = SecretHotkey::from_seed(
            HotkeyScheme::Sr25519,
            &bytes32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        );
        assert_eq!(
            secret.public().public_bytes(),
            &bytes32("44a996beb1eef7bdcab976ab6d2ca26104834164ecf28fb375600576fcc6eb0f")
        );
        // polkadot.js keyring: addFromSeed("12345678901234567890123456789012").
        let secret =
            SecretHotkey::from_seed(HotkeyScheme::Sr25519, b"12345678901234567890123456789012");
        assert_eq!(
            secret.public().public_bytes(),
            &bytes32("741c08a06f41c596608f6774259bd9043304adfa5d3eea62760bd9be97634d63")
        );
    }

    /// A signature made by another sr25519 implementation (@scure/sr25519
    /// 2.4.0, `sign(secret, message, random)`, which signs in the
    /// `substrate` context) verifies here.
    #[test]
    fn an_independent_sr25519_signature_verifies() {
        let public = Hotkey::from_public_bytes(
            HotkeyScheme::Sr25519,
            bytes32("44a996beb1eef7bdcab976ab6d2ca26104834164ecf28fb375600576fcc6eb0f"),
        )
        .expect("a hotkey");
        let signature = bytes64(
            "30659dac94680407f781dd189dd7c2366b2a300c1753b6ab50dde85a702c9976\
             dbc1b39a008bd8608b8fdd7e20d34cb04a69a6047f2f887c6ac75ec4e191fd8c",
        );
        let message = b"curves signs on ristretto255";
        assert_eq!(public.verify(message, &signature), Ok(()));
        assert_eq!(
            public.verify(b"curves signs on ristretto256", &signature),
            Err(HotkeySignatureError)
        );
    }

    /// RFC 8032 section 7.1, test 2 (one-byte message 0x72).
    #[test]
    fn ed25519_follows_rfc_8032() {
        let secret = SecretHotkey::from_seed(
            HotkeyScheme::Ed25519,
            &bytes32("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
        );
        assert_eq!(
            secret.public().to_string(),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        );
        let signature = secret.sign(&[0x72]);
        assert_eq!(
            hex::encode(signature),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
        assert_eq!(secret.public().verify(&[0x72], &signature), Ok(()));
    }

    #[test]
    fn both_schemes_sign_and_verify() {
        for scheme in [HotkeyScheme::Ed25519, HotkeyScheme::Sr25519] {
            let secret = SecretHotkey::generate(scheme);
            let public = secret.public();
            assert_eq!(public.scheme(), scheme);
            assert_eq!(Hotkey::parse(&public.to_string()), Ok(public));
            let signature = secret.sign(b"forecast");
            assert_eq!(public.verify(b"forecast", &signature), Ok(()));
            assert_eq!(
                public.verify(b"forecasts", &signature),
                Err(HotkeySignatureError)
            );
            assert_eq!(
                public.verify(b"forecast", &signature[..63]),
                Err(HotkeySignatureError)
            );
            let other = SecretHotkey::generate(scheme).public();
            assert_eq!(
                other.verify(b"forecast", &signature),
                Err(HotkeySignatureError)
            );
        }
    }

    #[test]
    fn a_signature_of_one_scheme_does_not_pass_for_the_other() {
        let seed = [5; 32];
        let ed = SecretHotkey::from_seed(HotkeyScheme::Ed25519, &seed);
        let sr = SecretHotkey::from_seed(HotkeyScheme::Sr25519, &seed);
        let sr_as_ed =
            Hotkey::from_public_bytes(HotkeyScheme::Ed25519, *sr.public().public_bytes());
        if let Ok(key) = sr_as_ed {
            assert!(key.verify(b"m", &sr.sign(b"m")).is_err());
        }
        let ed_as_sr =
            Hotkey::from_public_bytes(HotkeyScheme::Sr25519, *ed.public().public_bytes());
        if let Ok(key) = ed_as_sr {
            assert!(key.verify(b"m", &ed.sign(b"m")).is_err());
        }
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        for scheme in [HotkeyScheme::Ed25519, HotkeyScheme::Sr25519] {
            let secret = SecretHotkey::from_seed(scheme, &[0xab; 32]);
            let shown = format!("{secret:?}");
            assert!(shown.contains(&secret.public().to_string()), "{shown}");
            assert!(!shown.contains(&"ab".repeat(32)));
            assert!(!shown.contains("171, 171"));
            assert_eq!(secret.seed(), [0xab; 32]);
        }
    }
}
