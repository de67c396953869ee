//! Epistula v2 signing and verification, through the crate's public API.

use std::collections::HashMap;
use std::time::Duration;

use sooth_protocol::{
    EpistulaError, EpistulaHeaders, EpistulaVerifier, HEADER_EPISTULA_SIGNATURE,
    HEADER_EPISTULA_SIGNED_BY, HEADER_EPISTULA_SIGNED_FOR, HEADER_EPISTULA_TIMESTAMP,
    HEADER_EPISTULA_UUID, HEADER_EPISTULA_VERSION, Hotkey, HotkeyScheme, SecretHotkey,
    VerifiedEpistula, epistula_message, sign_epistula,
};

/// The validator requests are signed for: substrate's `//Bob`.
const VALIDATOR: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const NOW: u64 = 1_767_225_600_000;
const WINDOW: Duration = Duration::from_secs(30);
const WINDOW_MS: u64 = 30_000;
const BODY: &[u8] = br#"{"event_id":"e-1","probability":0.42}"#;
const BOTH: [HotkeyScheme; 2] = [HotkeyScheme::Ed25519, HotkeyScheme::Sr25519];

type Headers = HashMap<String, String>;

fn verifier() -> EpistulaVerifier {
    EpistulaVerifier::new(VALIDATOR.to_owned(), BOTH.to_vec(), WINDOW)
}

fn miner(scheme: HotkeyScheme) -> SecretHotkey {
    SecretHotkey::from_seed(scheme, &[7; 32])
}

fn headers(signed: &EpistulaHeaders) -> Headers {
    signed
        .pairs()
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn signed(scheme: HotkeyScheme, at: u64) -> Headers {
    headers(&sign_epistula(&miner(scheme), BODY, VALIDATOR, at))
}

fn check(
    verifier: &EpistulaVerifier,
    headers: &Headers,
    body: &[u8],
    now: u64,
) -> Result<VerifiedEpistula, EpistulaError> {
    verifier.verify(|name| headers.get(name).cloned(), body, now)
}

/// Signs `headers` again, as `secret`, over their current values and `body`.
fn resign(secret: &SecretHotkey, headers: &mut Headers, body: &[u8]) {
    let message = epistula_message(
        body,
        &headers[HEADER_EPISTULA_UUID],
        &headers[HEADER_EPISTULA_TIMESTAMP],
        &headers[HEADER_EPISTULA_SIGNED_FOR],
    );
    headers.insert(
        HEADER_EPISTULA_SIGNATURE.to_owned(),
        format!("0x{}", hex::encode(secret.sign(message.as_bytes()))),
    );
}

fn set(headers: &mut Headers, name: &str, value: impl Into<String>) {
    headers.insert(name.to_owned(), value.into());
}

#[test]
fn both_schemes_round_trip() {
    for scheme in BOTH {
        let secret = miner(scheme);
        let signed = sign_epistula(&secret, BODY, VALIDATOR, NOW);
        assert_eq!(signed.version, "2");
        assert_eq!(signed.timestamp, NOW.to_string());
        assert_eq!(signed.signed_by, secret.public().to_string());
        assert_eq!(signed.signed_for, VALIDATOR);
        assert!(signed.signature.starts_with("0x"));
        assert_eq!(signed.signature.len(), 2 + 128);
        let verified = verifier()
            .verify(|name| signed.get(name).map(str::to_owned), BODY, NOW)
            .expect("verified");
        assert_eq!(
            verified,
            VerifiedEpistula {
                hotkey: secret.public(),
                uuid: signed.uuid.clone(),
                timestamp_ms: NOW,
            }
        );
    }
}

#[test]
fn header_names_are_the_documented_ones() {
    let signed = sign_epistula(&miner(HotkeyScheme::Sr25519), b"", VALIDATOR, NOW);
    let names: Vec<&str> = signed.pairs().iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "epistula-version",
            "epistula-timestamp",
            "epistula-uuid",
            "epistula-signed-by",
            "epistula-signed-for",
            "epistula-request-signature",
        ]
    );
    assert_eq!(
        signed.get("Epistula-Signed-By"),
        Some(signed.signed_by.as_str())
    );
    assert_eq!(signed.get("Epistula-Other"), None);
    assert!(
        signed.signed_by.starts_with('5'),
        "an SS58 address: {}",
        signed.signed_by
    );
}

/// A fixed vector computed independently with Python's `cryptography`
/// package (Ed25519 is deterministic):
///
/// ```text
/// seed = bytes(range(32)); key = Ed25519PrivateKey.from_private_bytes(seed)
/// message = f"{hashlib.sha256(body).hexdigest()}.{uuid}.{timestamp}.{signed_for}"
/// "0x" + key.sign(message.encode()).hex()
/// ```
///
/// with the body, uuid, timestamp and signed-for below.
#[test]
fn an_independently_computed_ed25519_request_verifies() {
    let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).expect("small"));
    let secret = SecretHotkey::from_seed(HotkeyScheme::Ed25519, &seed);
    let public = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
    let uuid = "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b";
    let timestamp = "1767225600000";
    let message = "74cb5d9860c240d9083cc3d6bb761d4ac014beae66787c8a6e15e923674d4954\
                   .6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6b.1767225600000\
                   .5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    let signature = "0x5cd70de453061e9def2457fbec38b5e95067efc51d6a43905ebb5ab7a08f4b39\
                     f4eb908e9e356a7f780333b877e84c657bc30d619cf109c54afc2fdb63b1ab00";

    assert_eq!(secret.public().to_string(), public);
    assert_eq!(epistula_message(BODY, uuid, timestamp, VALIDATOR), message);
    assert_eq!(
        format!("0x{}", hex::encode(secret.sign(message.as_bytes()))),
        signature
    );
    let headers: Headers = [
        (HEADER_EPISTULA_VERSION, "2"),
        (HEADER_EPISTULA_TIMESTAMP, timestamp),
        (HEADER_EPISTULA_UUID, uuid),
        (HEADER_EPISTULA_SIGNED_BY, public),
        (HEADER_EPISTULA_SIGNED_FOR, VALIDATOR),
        (HEADER_EPISTULA_SIGNATURE, signature),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let verified = check(&verifier(), &headers, BODY, NOW).expect("verified");
    assert_eq!(verified.hotkey, Hotkey::parse(public).expect("a hotkey"));
    assert_eq!(verified.uuid, uuid);
    assert_eq!(verified.timestamp_ms, NOW);
}

#[test]
fn missing_headers_are_named() {
    let full = signed(HotkeyScheme::Ed25519, NOW);
    for name in [
        HEADER_EPISTULA_VERSION,
        HEADER_EPISTULA_TIMESTAMP,
        HEADER_EPISTULA_UUID,
        HEADER_EPISTULA_SIGNED_BY,
        HEADER_EPISTULA_SIGNED_FOR,
        HEADER_EPISTULA_SIGNATURE,
    ] {
        let mut headers = full.clone();
        headers.remove(name);
        let error = check(&verifier(), &headers, BODY, NOW).expect_err("refused");
        assert_eq!(error, EpistulaError::Missing { header: name });
        assert_eq!(error.code(), "missing_header");
        assert_eq!(error.header(), Some(name));
        assert!(error.to_string().contains(name), "{error}");
    }
}

#[test]
fn other_versions_are_refused() {
    for version in ["1", "2.0", "", " 2", "3"] {
        let mut headers = signed(HotkeyScheme::Ed25519, NOW);
        set(&mut headers, HEADER_EPISTULA_VERSION, version);
        let error = check(&verifier(), &headers, BODY, NOW).expect_err("refused");
        assert_eq!(
            error,
            EpistulaError::UnsupportedVersion {
                found: version.to_owned()
            }
        );
        assert_eq!(error.code(), "unsupported_version");
    }
}

#[test]
fn malformed_headers_are_named() {
    let full = signed(HotkeyScheme::Ed25519, NOW);
    let signature = full[HEADER_EPISTULA_SIGNATURE].clone();
    let cases: Vec<(&'static str, String)> = vec![
        (HEADER_EPISTULA_TIMESTAMP, String::new()),
        (HEADER_EPISTULA_TIMESTAMP, "soon".into()),
        (HEADER_EPISTULA_TIMESTAMP, format!("{}", NOW / 1000)), // seconds: well formed, stale
        (HEADER_EPISTULA_TIMESTAMP, format!("0{NOW}")),
        (HEADER_EPISTULA_TIMESTAMP, format!("-{NOW}")),
        (HEADER_EPISTULA_TIMESTAMP, format!("{NOW}.5")),
        (HEADER_EPISTULA_UUID, String::new()),
        (HEADER_EPISTULA_UUID, "abc".into()),
        (
            HEADER_EPISTULA_UUID,
            "6f1c2a4e3b5d4e8f9a0b1c2d3e4f5a6b".into(),
        ),
        (
            HEADER_EPISTULA_UUID,
            "6f1c2a4e-3b5d-4e8f-9a0b-1c2d3e4f5a6g".into(),
        ),
        (HEADER_EPISTULA_SIGNED_BY, String::new()),
        (HEADER_EPISTULA_SIGNED_BY, "miner-7".into()),
        (
            HEADER_EPISTULA_SIGNED_BY,
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ".into(),
        ),
        (HEADER_EPISTULA_SIGNED_BY, "ab".repeat(31)),
        (HEADER_EPISTULA_SIGNED_FOR, String::new()),
        (HEADER_EPISTULA_SIGNED_FOR, "two words".into()),
        (HEADER_EPISTULA_SIGNED_FOR, "v".repeat(129)),
        (HEADER_EPISTULA_SIGNATURE, String::new()),
        (HEADER_EPISTULA_SIGNATURE, "0x".into()),
        (
            HEADER_EPISTULA_SIGNATURE,
            signature[..signature.len() - 2].to_owned(),
        ),
        (HEADER_EPISTULA_SIGNATURE, format!("{signature}00")),
        (HEADER_EPISTULA_SIGNATURE, format!("0x{}", "zz".repeat(64))),
    ];
    for (name, value) in cases {
        let mut headers = full.clone();
        set(&mut headers, name, value.clone());
        let result = check(&verifier(), &headers, BODY, NOW);
        if name == HEADER_EPISTULA_TIMESTAMP && value == format!("{}", NOW / 1000) {
            assert!(
                matches!(result, Err(EpistulaError::Stale { .. })),
                "{result:?}"
            );
            continue;
        }
        let error = result.expect_err("refused");
        assert!(
            matches!(&error, EpistulaError::Malformed { header, .. } if *header == name),
            "{name} = {value:?}: {error:?}"
        );
        assert_eq!(error.code(), "malformed_header");
        assert!(error.to_string().contains(name), "{error}");
    }
    // The hotkey's problem is said.
    let mut headers = full;
    set(
        &mut headers,
        HEADER_EPISTULA_SIGNED_BY,
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ",
    );
    let error = check(&verifier(), &headers, BODY, NOW).expect_err("refused");
    assert!(error.to_string().contains("checksum"), "{error}");
}

#[test]
fn the_timestamp_must_be_within_the_window_edges_included() {
    for scheme in BOTH {
        for (signed_at, expected) in [
            (NOW - WINDOW_MS, Ok(())),
            (NOW + WINDOW_MS, Ok(())),
            (
                NOW - WINDOW_MS - 1,
                Err(EpistulaError::Stale {
                    age_ms: WINDOW_MS + 1,
                    window_ms: WINDOW_MS,
                }),
            ),
            (
                NOW + WINDOW_MS + 1,
                Err(EpistulaError::Future {
                    ahead_ms: WINDOW_MS + 1,
                    window_ms: WINDOW_MS,
                }),
            ),
            (
                0,
                Err(EpistulaError::Stale {
                    age_ms: NOW,
                    window_ms: WINDOW_MS,
                }),
            ),
            (
                u64::MAX,
                Err(EpistulaError::Future {
                    ahead_ms: u64::MAX - NOW,
                    window_ms: WINDOW_MS,
                }),
            ),
        ] {
            let result = check(&verifier(), &signed(scheme, signed_at), BODY, NOW).map(|_| ());
            assert_eq!(result, expected, "{scheme} at {signed_at}");
        }
    }
    let stale = check(
        &verifier(),
        &signed(HotkeyScheme::Ed25519, NOW - 45_000),
        BODY,
        NOW,
    )
    .expect_err("stale");
    assert_eq!(stale.code(), "stale_request");
    assert!(stale.to_string().contains("45000 ms ago"), "{stale}");
    let future = check(
        &verifier(),
        &signed(HotkeyScheme::Ed25519, NOW + 45_000),
        BODY,
        NOW,
    )
    .expect_err("future");
    assert_eq!(future.code(), "future_request");
    assert!(
        future.to_string().contains("45000 ms in the future"),
        "{future}"
    );
}

#[test]
fn a_request_for_another_validator_is_refused_naming_both() {
    let alice = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    let secret = miner(HotkeyScheme::Sr25519);
    let headers = headers(&sign_epistula(&secret, BODY, alice, NOW));
    let error = check(&verifier(), &headers, BODY, NOW).expect_err("refused");
    assert_eq!(
        error,
        EpistulaError::WrongValidator {
            signed_for: alice.to_owned(),
            expected: VALIDATOR.to_owned(),
        }
    );
    assert_eq!(error.code(), "wrong_validator");
    let message = error.to_string();
    assert!(
        message.contains(alice) && message.contains(VALIDATOR),
        "{message}"
    );
    // Changing the header to this validator breaks the signature.
    let mut headers = headers;
    set(&mut headers, HEADER_EPISTULA_SIGNED_FOR, VALIDATOR);
    assert_eq!(
        check(&verifier(), &headers, BODY, NOW),
        Err(EpistulaError::BadSignature)
    );
}

#[test]
fn tampering_breaks_the_signature() {
    for scheme in BOTH {
        let full = signed(scheme, NOW);
        let bad = Err(EpistulaError::BadSignature);

        let mut body = BODY.to_vec();
        body.push(b' ');
        assert_eq!(check(&verifier(), &full, &body, NOW), bad);
        assert_eq!(check(&verifier(), &full, b"", NOW), bad);

        let mut headers = full.clone();
        set(
            &mut headers,
            HEADER_EPISTULA_TIMESTAMP,
            (NOW + 1).to_string(),
        );
        assert_eq!(check(&verifier(), &headers, BODY, NOW), bad);

        let mut headers = full.clone();
        set(
            &mut headers,
            HEADER_EPISTULA_UUID,
            "00000000-0000-4000-8000-000000000000",
        );
        assert_eq!(check(&verifier(), &headers, BODY, NOW), bad);

        // Signed by another key, claiming to be this one.
        let mut headers = full.clone();
        resign(
            &SecretHotkey::from_seed(scheme, &[8; 32]),
            &mut headers,
            BODY,
        );
        assert_eq!(check(&verifier(), &headers, BODY, NOW), bad);

        // This key's signature, claimed by another.
        let mut headers = full.clone();
        let other = SecretHotkey::from_seed(scheme, &[8; 32])
            .public()
            .to_string();
        set(&mut headers, HEADER_EPISTULA_SIGNED_BY, other);
        assert_eq!(check(&verifier(), &headers, BODY, NOW), bad);

        // The signature of another request.
        let mut headers = full.clone();
        let other = signed(scheme, NOW);
        set(
            &mut headers,
            HEADER_EPISTULA_SIGNATURE,
            other[HEADER_EPISTULA_SIGNATURE].clone(),
        );
        assert_eq!(check(&verifier(), &headers, BODY, NOW), bad);

        // The untouched request still verifies (nothing above burnt its uuid).
        assert!(check(&verifier(), &full, BODY, NOW).is_ok());
    }
    assert_eq!(EpistulaError::BadSignature.code(), "bad_signature");
}

#[test]
fn a_scheme_the_verifier_does_not_accept_is_refused() {
    let ed_only = EpistulaVerifier::new(VALIDATOR.to_owned(), vec![HotkeyScheme::Ed25519], WINDOW);
    let error =
        check(&ed_only, &signed(HotkeyScheme::Sr25519, NOW), BODY, NOW).expect_err("refused");
    assert_eq!(
        error,
        EpistulaError::SchemeNotAccepted {
            scheme: HotkeyScheme::Sr25519
        }
    );
    assert_eq!(error.code(), "scheme_not_accepted");
    assert!(check(&ed_only, &signed(HotkeyScheme::Ed25519, NOW), BODY, NOW).is_ok());
    let nobody = EpistulaVerifier::new(VALIDATOR.to_owned(), Vec::new(), WINDOW);
    assert!(matches!(
        check(&nobody, &signed(HotkeyScheme::Ed25519, NOW), BODY, NOW),
        Err(EpistulaError::SchemeNotAccepted { .. })
    ));
}

#[test]
fn a_replayed_request_is_refused() {
    for scheme in BOTH {
        let verifier = verifier();
        let headers = signed(scheme, NOW);
        assert!(check(&verifier, &headers, BODY, NOW).is_ok());
        let error = check(&verifier, &headers, BODY, NOW + 1_000).expect_err("replayed");
        assert_eq!(error, EpistulaError::Replayed);
        assert_eq!(error.code(), "replayed_request");
        // Still refused at the window's edge.
        assert_eq!(
            check(&verifier, &headers, BODY, NOW + WINDOW_MS),
            Err(EpistulaError::Replayed)
        );
        // The same uuid in a new signature (another body) is refused too.
        let mut again = headers.clone();
        resign(&miner(scheme), &mut again, b"{}");
        assert_eq!(
            check(&verifier, &again, b"{}", NOW + 1_000),
            Err(EpistulaError::Replayed)
        );
        // Another miner may happen to use the same uuid.
        let mut other = headers.clone();
        let stranger = SecretHotkey::from_seed(scheme, &[9; 32]);
        set(
            &mut other,
            HEADER_EPISTULA_SIGNED_BY,
            stranger.public().to_string(),
        );
        resign(&stranger, &mut other, BODY);
        assert!(check(&verifier, &other, BODY, NOW).is_ok());
    }
}

/// Chosen behaviour: a uuid is remembered for as long as its request could
/// be accepted (its timestamp plus the window). After that the old request
/// is refused as stale, and the uuid may be used again in a newly signed
/// request.
#[test]
fn a_uuid_is_forgotten_once_its_request_is_stale() {
    let verifier = verifier();
    let secret = miner(HotkeyScheme::Ed25519);
    let headers = signed(HotkeyScheme::Ed25519, NOW);
    assert!(check(&verifier, &headers, BODY, NOW).is_ok());
    let later = NOW + WINDOW_MS + 1;
    assert_eq!(
        check(&verifier, &headers, BODY, later),
        Err(EpistulaError::Stale {
            age_ms: WINDOW_MS + 1,
            window_ms: WINDOW_MS
        })
    );
    let mut reused = headers.clone();
    set(&mut reused, HEADER_EPISTULA_TIMESTAMP, later.to_string());
    resign(&secret, &mut reused, BODY);
    assert!(check(&verifier, &reused, BODY, later).is_ok());
    assert_eq!(verifier.remembered(), 1);
    assert_eq!(
        check(&verifier, &reused, BODY, later),
        Err(EpistulaError::Replayed)
    );
}

#[test]
fn a_full_memory_refuses_new_requests_as_busy() {
    let verifier = verifier().with_max_remembered(3);
    for i in 0..3 {
        assert!(
            check(
                &verifier,
                &signed(HotkeyScheme::Ed25519, NOW + i),
                BODY,
                NOW + i
            )
            .is_ok()
        );
    }
    assert_eq!(verifier.remembered(), 3);
    let fourth = signed(HotkeyScheme::Sr25519, NOW + 3);
    let error = check(&verifier, &fourth, BODY, NOW + 3).expect_err("busy");
    assert_eq!(error, EpistulaError::Busy);
    assert_eq!(error.code(), "busy");
    assert_eq!(verifier.remembered(), 3);
    // Once the first request is older than the window, there is room for
    // one more; the refused request is taken now.
    let later = NOW + WINDOW_MS + 1;
    let fifth = signed(HotkeyScheme::Sr25519, later);
    assert!(check(&verifier, &fifth, BODY, later).is_ok());
    assert_eq!(
        check(&verifier, &fourth, BODY, later),
        Err(EpistulaError::Busy)
    );
    assert!(check(&verifier, &fourth, BODY, later + 1).is_ok());
    // Remembering nothing means taking nothing.
    let closed =
        EpistulaVerifier::new(VALIDATOR.to_owned(), BOTH.to_vec(), WINDOW).with_max_remembered(0);
    assert_eq!(
        check(&closed, &signed(HotkeyScheme::Ed25519, NOW), BODY, NOW),
        Err(EpistulaError::Busy)
    );
}

#[test]
fn one_request_sent_on_many_threads_is_accepted_once() {
    let verifier = verifier();
    let headers = signed(HotkeyScheme::Sr25519, NOW);
    let accepted = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| check(&verifier, &headers, BODY, NOW)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("thread"))
            .filter(Result::is_ok)
            .count()
    });
    assert_eq!(accepted, 1);
}
