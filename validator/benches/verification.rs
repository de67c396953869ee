//! From upload to verdict: a Rust agent uploaded through the HTTP API (signed, checked, kept,
//! queued) and verified by the queue's worker (duplicate check; compile, in-process, the
//! runner's default for an embedder, where `sooth` compiles in a child process; 200 probe runs
//! in the sandbox; originality against 255 earlier versions of other miners), on SQLite in a temporary directory with the default settings. Then 50 uploads of different
//! components at once, all verified: every one gets a verdict, none is lost.
//!
//! Run with `cargo bench -p sooth-validator --bench verification`. Target: <= 2 s from upload
//! to verdict on the 2-core machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::TimeDelta;
use sooth_protocol::{HotkeyScheme, SecretHotkey, sign_epistula};
use sooth_runner::{Runner, RunnerConfig, ScriptedGateway};
use sooth_validator::store::{
    EventRecord, EventStatus, NewUpload, ProbeRun, Store, UploadedBy, Verification,
};
use sooth_validator::verification::{ProbeSet, VerificationSettings, Verified, Verifier};
use sooth_validator::{
    Daemon, DaemonSettings, DeskSettings, Event, Miner, NoWeightSetter, Outcome, RegistrationRules,
    RunStatus, SandboxExecutor, SimulatedClock, UploadDesk,
};
use tower::ServiceExt as _;

const PROBE_EVENTS: usize = 200;
const EARLIER_VERSIONS: usize = 255;
const CONCURRENT_UPLOADS: usize = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agent = std::fs::read(sooth_test_agents::market_baseline())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(agent))
}

fn probe_set() -> ProbeSet {
    let created = chrono::DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
        .unwrap()
        .to_utc();
    ProbeSet::from_events(
        (0..PROBE_EVENTS)
            .map(|index| {
                let mut event = Event::new(
                    format!("probe-{index}"),
                    format!("Will probe question {index} resolve yes?"),
                    created + TimeDelta::hours(i64::try_from(index).unwrap()),
                );
                let market = 0.05 + 0.9 * ((index * 37 % 101) as f64 / 100.0);
                event
                    .metadata
                    .insert("market_prob".to_owned(), serde_json::json!(market));
                EventRecord {
                    event,
                    status: EventStatus::Resolved,
                    outcome: Some(if index % 3 == 0 {
                        Outcome::Yes
                    } else {
                        Outcome::No
                    }),
                    resolved_at: Some(created + TimeDelta::days(60)),
                }
            })
            .collect(),
    )
}

/// 255 earlier versions of other miners with probe predictions of their own (a private signal
/// each, so that none is a copy of another).
async fn seed_earlier(store: &Store, probe: &ProbeSet, now: chrono::DateTime<chrono::Utc>) {
    for index in 0..EARLIER_VERSIONS {
        let hotkey = SecretHotkey::generate(HotkeyScheme::Ed25519)
            .public()
            .to_string();
        store
            .register_miner(&Miner {
                uid: u16::try_from(index).unwrap(),
                hotkey: hotkey.clone(),
                registered_at: now - TimeDelta::days(30),
            })
            .await
            .unwrap();
        store
            .enqueue_upload(&NewUpload {
                hotkey,
                hash: format!("{index:064x}"),
                size_bytes: 1,
                uploaded_by: UploadedBy::Operator,
                at: now - TimeDelta::days(10),
                min_interval: TimeDelta::days(3),
            })
            .await
            .unwrap();
        let claim = store
            .claim_verification(now - TimeDelta::days(10), TimeDelta::minutes(1), 3)
            .await
            .unwrap()
            .unwrap();
        let runs: Vec<ProbeRun> = probe
            .events()
            .iter()
            .enumerate()
            .map(|(event, record)| {
                let market = record.event.metadata["market_prob"].as_f64().unwrap();
                let private = ((event * 7919 + index * 104_729) % 1000) as f64 / 1000.0 - 0.5;
                ProbeRun {
                    event_id: record.event.id.clone(),
                    status: RunStatus::Ok,
                    prediction: Some((market + 0.2 * private).clamp(0.0, 1.0)),
                    duration_ms: 1,
                }
            })
            .collect();
        store
            .finish_verification(
                &claim,
                &Verification::Verified,
                &[],
                &runs,
                now - TimeDelta::days(10),
            )
            .await
            .unwrap();
    }
}

async fn run(agent: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("validator.sqlite")).await?;
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")?.to_utc();
    let clock = Arc::new(SimulatedClock::new(now));
    let probe = probe_set();
    seed_earlier(&store, &probe, now).await;

    let runner = Runner::new(RunnerConfig::default())?;
    let executor = Arc::new(SandboxExecutor::new(
        runner,
        dir.path().join("agents"),
        Arc::new(ScriptedGateway::empty()),
        None,
    )?);
    let daemon = Arc::new(Daemon::new(
        store.clone(),
        clock.clone(),
        executor.clone(),
        Arc::new(NoWeightSetter),
        DaemonSettings {
            registration: RegistrationRules {
                slots: 1024,
                ..RegistrationRules::default()
            },
            ..DaemonSettings::default()
        },
    )?);
    let verifier = Arc::new(Verifier::new(
        store.clone(),
        executor.clone(),
        clock.clone(),
        probe,
        VerificationSettings::default(),
    ));
    let validator = SecretHotkey::generate(HotkeyScheme::Ed25519).public();
    let desk = Arc::new(UploadDesk::new(
        &validator,
        vec![HotkeyScheme::Ed25519],
        Duration::from_secs(8),
        executor.components().clone(),
        Arc::clone(&daemon),
        Some(verifier.clone()),
        DeskSettings {
            max_bytes: 32 << 20,
            min_interval: TimeDelta::days(3),
            open_registration: true,
            registrations_per_hour: 1_000,
        },
    ));
    let router = sooth_validator::api::router_with_uploads(desk, 4);
    let send = |miner: &SecretHotkey, path: &str, body: Vec<u8>| {
        let headers = sign_epistula(
            miner,
            &body,
            &validator.to_string(),
            u64::try_from(now.timestamp_millis()).unwrap(),
        );
        let mut request = Request::post(path);
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        let request = request.body(Body::from(body)).unwrap();
        let router = router.clone();
        async move { router.oneshot(request).await.unwrap().status() }
    };

    // One upload, timed from the request to the recorded verdict.
    let miner = SecretHotkey::generate(HotkeyScheme::Ed25519);
    assert_eq!(send(&miner, "/v1/miners", Vec::new()).await, StatusCode::OK);
    let started = Instant::now();
    assert_eq!(
        send(&miner, "/v1/agents", agent.clone()).await,
        StatusCode::ACCEPTED
    );
    let accepted = started.elapsed();
    let pass = verifier.verify_next().await?.expect("the upload is queued");
    let verdict = started.elapsed();
    let Verified::Decided { verification, .. } = &pass else {
        panic!("no verdict: {pass:?}");
    };
    println!(
        "upload to verdict ({PROBE_EVENTS} probe events, {EARLIER_VERSIONS} earlier versions): \
         {:.0} ms (accepted after {:.1} ms) -> {verification:?}",
        verdict.as_secs_f64() * 1e3,
        accepted.as_secs_f64() * 1e3,
    );

    // The daemon's scoring (the leaderboard over the last 101 resolved events of every
    // registered miner), timed idle and while the queue works through 50 uploads.
    for index in 0..101 {
        let created = now - TimeDelta::days(5) + TimeDelta::minutes(index);
        store
            .insert_event(&Event::new(
                format!("live-{index}"),
                "a live question",
                created,
            ))
            .await?;
        store
            .resolve_event(
                &format!("live-{index}"),
                u8::from(index % 3 == 0),
                created + TimeDelta::hours(1),
            )
            .await?;
    }
    let scoring = |daemon: Arc<Daemon>| async move {
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            daemon.standings(now).await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let idle = scoring(Arc::clone(&daemon)).await;

    // Fifty miners upload different components at once; the worker verifies them all.
    let miners: Vec<SecretHotkey> = (0..CONCURRENT_UPLOADS)
        .map(|_| SecretHotkey::generate(HotkeyScheme::Ed25519))
        .collect();
    for miner in &miners {
        assert_eq!(send(miner, "/v1/miners", Vec::new()).await, StatusCode::OK);
    }
    let started = Instant::now();
    let uploads = miners.iter().enumerate().map(|(index, miner)| {
        let mut bytes = agent.clone();
        // A custom section: other bytes, the same agent.
        let name = format!("upload-{index}");
        bytes.push(0);
        bytes.push(u8::try_from(name.len() + 1).unwrap());
        bytes.push(u8::try_from(name.len()).unwrap());
        bytes.extend_from_slice(name.as_bytes());
        send(miner, "/v1/agents", bytes)
    });
    let statuses = futures::future::join_all(uploads).await;
    let accepted = statuses
        .iter()
        .filter(|status| **status == StatusCode::ACCEPTED)
        .count();
    let uploaded = started.elapsed();
    let busy = tokio::spawn(scoring(Arc::clone(&daemon)));
    let mut verdicts = 0;
    while let Some(pass) = verifier.verify_next().await? {
        if matches!(pass, Verified::Decided { .. }) {
            verdicts += 1;
        }
    }
    let all = started.elapsed();
    let busy = busy.await?;
    println!(
        "{CONCURRENT_UPLOADS} concurrent uploads: {accepted} accepted in {:.0} ms; {verdicts} \
         verdicts after {:.1} s ({:.0} ms each); backlog left {}",
        uploaded.as_secs_f64() * 1e3,
        all.as_secs_f64(),
        all.as_secs_f64() * 1e3 / verdicts.max(1) as f64,
        store.verification_backlog().await?,
    );
    println!(
        "daemon scoring ({} miners x 101 events), median of 20: {idle:.1} ms idle, {busy:.1} ms \
         while the queue verifies the uploads",
        store.registered_miners().await?.len()
    );
    Ok(())
}
