//! Miners' signed requests through the HTTP API: registration, uploads and their refusals, and
//! the verification queue deciding what was uploaded (duplicate, loading, probe runs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::TimeDelta;
use common::desk::{MAX_BYTES, Options, custom_section, harness, probe_events, shared_probe_set};
use serde_json::Value;
use sooth_protocol::{HotkeyScheme, SecretHotkey, sign_epistula};
use sooth_validator::verification::Verified;

fn always_half() -> Vec<u8> {
    std::fs::read(sooth_test_agents::always_half()).unwrap()
}

fn code(body: &Value) -> &str {
    body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_miner_uploads_and_its_version_is_verified_on_the_probe_set() {
    let h = harness(Options {
        probe: probe_events(&["a", "b", "c"]),
        ..Options::default()
    })
    .await;
    let (status, identity) = h.get("/v1/identity").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity["hotkey"], h.validator.to_string());
    let miner = SecretHotkey::generate(HotkeyScheme::Sr25519);
    h.register(&miner).await;
    let (status, accepted) = h.upload(&miner, always_half()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["status"], "pending");
    let version = accepted["version"].as_i64().unwrap();
    let (_, pending) = h.get(&format!("/v1/agents/{version}")).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["hotkey"], miner.public().to_string());

    let passes = h.verify_all().await;
    assert_eq!(passes.len(), 1, "{passes:?}");
    let (_, verified) = h.get(&format!("/v1/agents/{version}")).await;
    assert_eq!(verified["status"], "verified", "{verified}");
    let checks: Vec<&str> = verified["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|verdict| verdict["check"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"duplicate") && checks.contains(&"originality"),
        "{verified}"
    );
    // Its probe predictions are kept.
    let predictions = h.store.probe_predictions(version).await.unwrap();
    assert_eq!(predictions.len(), 3);
    assert!(predictions.values().all(|value| *value == Some(0.5)));
    let (_, listed) = h
        .get(&format!("/v1/miners/{}/agents", miner.public()))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_the_operators_unless_opened_and_is_rate_limited() {
    let closed = harness(Options {
        open_registration: false,
        ..Options::default()
    })
    .await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let (status, body) = closed
        .send(closed.signed(&miner, "/v1/miners", Vec::new()))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "registration_closed")
    );
    assert!(
        closed
            .store
            .miner(&miner.public().to_string())
            .await
            .unwrap()
            .is_none()
    );

    let open = harness(Options {
        registrations_per_hour: 3,
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        open.register(&SecretHotkey::generate(HotkeyScheme::Ed25519))
            .await;
    }
    let (status, body) = open
        .send(open.signed(&miner, "/v1/miners", Vec::new()))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "registration_rate_limited")
    );
    assert!(body["retry_at"].is_string(), "{body}");
    open.clock.advance_by(TimeDelta::minutes(61)).unwrap();
    open.register(&miner).await;
    let (status, body) = open
        .send(open.signed(&miner, "/v1/miners", Vec::new()))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_registered")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_refused_and_nothing_is_stored() {
    let h = harness(Options::default()).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let hotkey = miner.public().to_string();

    // No signature at all.
    let request = Request::post("/v1/agents")
        .body(Body::from(always_half()))
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "missing_header")
    );

    // Signed over other bytes.
    let mut request = h.signed(&miner, "/v1/agents", b"other bytes".to_vec());
    *request.body_mut() = Body::from(always_half());
    request.headers_mut().remove("content-length");
    let (status, body) = h.send(request).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "bad_signature")
    );

    // Signed 9 s ago (the window is 8 s), and 9 s ahead.
    let stale = h.signed_at(&miner, "/v1/agents", always_half(), h.now_ms() - 9_000);
    let (status, body) = h.send(stale).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "stale_request")
    );
    let future = h.signed_at(&miner, "/v1/agents", always_half(), h.now_ms() + 9_000);
    let (status, body) = h.send(future).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "future_request")
    );

    // Signed for another validator.
    let other = SecretHotkey::generate(HotkeyScheme::Ed25519)
        .public()
        .to_string();
    let bytes = always_half();
    let headers = sign_epistula(&miner, &bytes, &other, h.now_ms());
    let mut request = Request::post("/v1/agents");
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let (status, body) = h.send(request.body(Body::from(bytes)).unwrap()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "wrong_validator")
    );

    // A hotkey nobody registered.
    let stranger = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let (status, body) = h.upload(&stranger, always_half()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "unknown_hotkey")
    );

    assert!(h.store.uploads_of(&hotkey).await.unwrap().is_empty());
    assert_eq!(h.store.verification_backlog().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_upload_is_refused() {
    let h = harness(Options::default()).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let bytes = always_half();
    let headers = sign_epistula(&miner, &bytes, &h.validator.to_string(), h.now_ms());
    let request = || {
        let mut request = Request::post("/v1/agents");
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        request.body(Body::from(bytes.clone())).unwrap()
    };
    let (status, first) = h.send(request()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, body) = h.send(request()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "replayed_request")
    );
    assert_eq!(
        h.store
            .uploads_of(&miner.public().to_string())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_refused_without_reading_it() {
    let h = harness(Options::default()).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let size = usize::try_from(MAX_BYTES).unwrap() * 4;

    // A body streamed in 64 KiB chunks; counts what the server pulled.
    let streamed = |pulled: Arc<AtomicUsize>| {
        let chunks = (0..size / 65_536).map(move |_| {
            pulled.fetch_add(65_536, Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![0_u8; 65_536])
        });
        Body::from_stream(futures::stream::iter(chunks))
    };

    // Declared too large: refused before a byte is read.
    let pulled = Arc::new(AtomicUsize::new(0));
    let headers = sign_epistula(&miner, b"", &h.validator.to_string(), h.now_ms());
    let mut request = Request::post("/v1/agents").header("content-length", size);
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let (status, body) = h
        .send(request.body(streamed(pulled.clone())).unwrap())
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    assert_eq!(pulled.load(Ordering::SeqCst), 0);

    // Undeclared: read up to the cap, no further.
    let pulled = Arc::new(AtomicUsize::new(0));
    let headers = sign_epistula(&miner, b"", &h.validator.to_string(), h.now_ms());
    let mut request = Request::post("/v1/agents");
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let (status, body) = h
        .send(request.body(streamed(pulled.clone())).unwrap())
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let read = pulled.load(Ordering::SeqCst);
    assert!(
        read <= usize::try_from(MAX_BYTES).unwrap() + 65_536,
        "read {read} of {size}"
    );
    assert!(
        h.store
            .uploads_of(&miner.public().to_string())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_a_component_are_refused() {
    let h = harness(Options::default()).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let core_module = wat::parse_str("(module)").unwrap();
    for bytes in [b"not wasm at all".to_vec(), core_module] {
        let (status, body) = h.upload(&miner, bytes).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "not_a_component"),
            "{body}"
        );
    }
    assert!(
        h.store
            .uploads_of(&miner.public().to_string())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upload_every_three_days_even_under_a_flood() {
    let h = harness(Options::default()).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let base = always_half();
    // Twelve different components at once (a custom section changes the bytes only).
    let mut floods = Vec::new();
    for index in 0..12_u8 {
        let mut bytes = base.clone();
        bytes.extend_from_slice(&custom_section(&format!("copy-{index}")));
        floods.push(h.upload(&miner, bytes));
    }
    let answers = futures::future::join_all(floods).await;
    let accepted = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 1, "{answers:?}");
    for (status, body) in answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::ACCEPTED)
    {
        assert_eq!(
            (*status, code(body)),
            (StatusCode::TOO_MANY_REQUESTS, "upload_too_soon")
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("next is allowed at"),
            "{body}"
        );
        assert!(body["next_allowed_at"].is_string(), "{body}");
    }
    h.clock.advance_by(TimeDelta::days(3)).unwrap();
    let mut bytes = base;
    bytes.extend_from_slice(&custom_section("three days later"));
    let (status, body) = h.upload(&miner, bytes).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_as_another_miners_earlier_version_are_rejected_naming_it() {
    let h = harness(Options::default()).await;
    let first = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let copier = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&first).await;
    h.register(&copier).await;
    let (_, original) = h.upload(&first, always_half()).await;
    h.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    let (_, copy) = h.upload(&copier, always_half()).await;
    h.verify_all().await;
    let (_, original) = h.get(&format!("/v1/agents/{}", original["version"])).await;
    assert_eq!(original["status"], "verified", "{original}");
    let (_, copy) = h.get(&format!("/v1/agents/{}", copy["version"])).await;
    assert_eq!(copy["status"], "rejected", "{copy}");
    assert_eq!(copy["matched_version"], original["version"]);
    assert!(
        copy["reason"].as_str().unwrap().starts_with("duplicate"),
        "{copy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_foreign_imports_is_rejected_at_verification() {
    let h = harness(Options::default()).await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let foreign = wat::parse_str(
        r#"(component
             (import "wasi:sockets/tcp@0.2.0" (instance))
           )"#,
    )
    .unwrap();
    let (status, accepted) = h.upload(&miner, foreign).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    h.verify_all().await;
    let (_, version) = h.get(&format!("/v1/agents/{}", accepted["version"])).await;
    assert_eq!(version["status"], "rejected", "{version}");
    assert!(
        version["reason"]
            .as_str()
            .unwrap()
            .contains("does not load"),
        "{version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_times_out_on_every_probe_event_is_rejected_without_running_them_all() {
    let h = harness(Options {
        probe: probe_events(&["spin"; 12]),
        max_probe_failures: 2,
        timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let hostile = std::fs::read(sooth_test_agents::hostile()).unwrap();
    let (_, accepted) = h.upload(&miner, hostile).await;
    let version = accepted["version"].as_i64().unwrap();
    h.verify_all().await;
    let (_, record) = h.get(&format!("/v1/agents/{version}")).await;
    assert_eq!(record["status"], "rejected", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("probe events") && reason.contains("timeout"),
        "{reason}"
    );
    // It stopped after the third failure (two runs at a time): not all twelve ran.
    let ran = h.store.probe_predictions(version).await.unwrap().len();
    assert!(ran < 12, "{ran} probe runs recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_rejected_naming_the_first_uploader_and_honest_agents_are_verified() {
    let Some(probe) = shared_probe_set(200) else {
        return;
    };
    let h = harness(Options {
        probe,
        ..Options::default()
    })
    .await;
    let read = |path: std::path::PathBuf| std::fs::read(path).unwrap();
    let original = read(sooth_test_agents::signal_agent(&[]));
    let mut rebuilt = original.clone();
    rebuilt.extend_from_slice(&custom_section("rebuilt"));
    let agents: Vec<(&str, Vec<u8>, &str)> = vec![
        ("original", original, "verified"),
        ("rebuild with other bytes", rebuilt, "rejected"),
        (
            "copy with noise 0.01",
            read(sooth_test_agents::signal_agent(&["noise-1"])),
            "rejected",
        ),
        (
            "copy with noise 0.03",
            read(sooth_test_agents::signal_agent(&["noise-3"])),
            "rejected",
        ),
        (
            "market follower",
            read(sooth_test_agents::market_baseline()),
            "verified",
        ),
        (
            "independent signal",
            read(sooth_test_agents::signal_agent(&["independent"])),
            "verified",
        ),
        ("constant", always_half(), "verified"),
    ];
    let mut versions = Vec::new();
    for (name, bytes, _) in &agents {
        let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
        h.register(&miner).await;
        let (status, accepted) = h.upload(&miner, bytes.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {accepted}");
        versions.push(accepted["version"].as_i64().unwrap());
        h.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    }
    h.verify_all().await;
    let first = versions[0];
    for ((name, _, expected), version) in agents.iter().zip(&versions) {
        let (_, record) = h.get(&format!("/v1/agents/{version}")).await;
        assert_eq!(record["status"], *expected, "{name}: {record}");
        if *expected == "rejected" {
            assert_eq!(record["matched_version"], first, "{name}: {record}");
            assert!(
                record["reason"].as_str().unwrap().contains("not original"),
                "{name}: {record}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_that_dies_mid_verification_loses_the_item_and_it_gets_one_verdict() {
    let h = harness(Options {
        probe: probe_events(&["sleep"; 4]),
        timeout: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&miner).await;
    let hostile = std::fs::read(sooth_test_agents::hostile()).unwrap();
    let (_, accepted) = h.upload(&miner, hostile).await;
    let version = accepted["version"].as_i64().unwrap();

    // The first worker claims the item and is killed while its agent sleeps on the probe set.
    let first = tokio::spawn({
        let verifier = h.verifier.clone();
        async move { verifier.verify_next().await }
    });
    loop {
        let (_, record) = h.get(&format!("/v1/agents/{version}")).await;
        if record["status"] == "verifying" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    // Until its lease ends nobody else takes the item; then the next worker does, once.
    assert!(h.verifier.verify_next().await.unwrap().is_none());
    h.clock.advance_by(TimeDelta::seconds(121)).unwrap();
    let passes = h.verify_all().await;
    assert!(
        matches!(passes.as_slice(), [Verified::Decided { version: decided, .. }] if *decided == version),
        "{passes:?}"
    );
    let (_, record) = h.get(&format!("/v1/agents/{version}")).await;
    assert_eq!(record["attempts"], 2, "{record}");
    let duplicates = record["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|verdict| verdict["check"] == "duplicate")
        .count();
    assert_eq!(duplicates, 1, "{record}");
    assert!(h.verify_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_agent_shares_with_a_benchmark_agent_is_a_public_signal_not_a_copy() {
    let Some(probe) = shared_probe_set(200) else {
        return;
    };
    let signal = std::fs::read(sooth_test_agents::signal_agent(&[])).unwrap();
    let noisy = std::fs::read(sooth_test_agents::signal_agent(&["noise-1"])).unwrap();
    let mut rebuilt = noisy.clone();
    rebuilt.extend_from_slice(&custom_section("rebuilt"));
    // The signal agent is a benchmark here: everyone sees its predictions.
    let h = harness(Options {
        probe,
        benchmarks: vec![("signal".to_owned(), signal)],
        ..Options::default()
    })
    .await;
    let first = SecretHotkey::generate(HotkeyScheme::Ed25519);
    let second = SecretHotkey::generate(HotkeyScheme::Ed25519);
    h.register(&first).await;
    h.register(&second).await;
    // Two miners both follow the benchmark with noise of their own: neither copies the other.
    let (_, one) = h.upload(&first, noisy).await;
    h.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    let (_, two) = h
        .upload(
            &second,
            std::fs::read(sooth_test_agents::signal_agent(&["noise-3"])).unwrap(),
        )
        .await;
    h.verify_all().await;
    for accepted in [&one, &two] {
        let (_, record) = h.get(&format!("/v1/agents/{}", accepted["version"])).await;
        assert_eq!(record["status"], "verified", "{record}");
    }
    // Without the benchmark the same second upload is a copy of the first.
    let plain = harness(Options {
        probe: shared_probe_set(200).unwrap(),
        ..Options::default()
    })
    .await;
    plain.register(&first).await;
    plain.register(&second).await;
    plain
        .upload(
            &first,
            std::fs::read(sooth_test_agents::signal_agent(&["noise-1"])).unwrap(),
        )
        .await;
    plain.clock.advance_by(TimeDelta::seconds(1)).unwrap();
    let (_, copy) = plain.upload(&second, rebuilt).await;
    plain.verify_all().await;
    let (_, record) = plain.get(&format!("/v1/agents/{}", copy["version"])).await;
    assert_eq!(record["status"], "rejected", "{record}");
}
