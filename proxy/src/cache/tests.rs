//! The response cache's tests.

use super::*;
use serde_json::Value;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

const TTL: Duration = Duration::from_secs(60);

fn ok(body: &str) -> CachedResponse {
    CachedResponse {
        status: 200,
        body: body.as_bytes().to_vec(),
        content_type: "application/json".to_owned(),
    }
}

fn status(code: u16) -> CachedResponse {
    CachedResponse {
        status: code,
        ..ok("{\"error\":\"nope\"}")
    }
}

async fn file_cache() -> (tempfile::TempDir, ResponseCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = ResponseCache::open(&dir.path().join("cache.sqlite"))
        .await
        .unwrap();
    (dir, cache)
}

/// A fetch that counts its calls, sleeps, then answers `response`.
fn counted(
    calls: &Arc<AtomicUsize>,
    sleep: Duration,
    response: Result<CachedResponse, String>,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<CachedResponse, String>> + Send>>
+ Send
+ 'static {
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(sleep).await;
            response
        })
    }
}

fn tally(outcomes: &[CacheOutcome], which: CacheOutcome) -> usize {
    outcomes.iter().filter(|o| **o == which).count()
}

#[test]
fn key_ignores_key_order_and_whitespace() {
    let a: Value = serde_json::from_str(
        r#"{"model":"org/M","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#,
    )
    .unwrap();
    let b: Value = serde_json::from_str(
        "{ \"max_tokens\" : 10,\n \"messages\" : [ { \"content\" : \"hi\", \"role\" : \"user\" } ],\n \"model\" : \"org/M\" }",
    )
    .unwrap();
    assert_eq!(
        cache_key("chutes", "chat", &a),
        cache_key("chutes", "chat", &b)
    );
    assert_eq!(
        canonical_body(&b),
        r#"{"max_tokens":10,"messages":[{"content":"hi","role":"user"}],"model":"org/M"}"#
    );
    let key = cache_key("chutes", "chat", &a);
    assert_eq!(key.len(), 64);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // Array order is content, not layout.
    let c = json!({"model": "org/M", "messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]});
    let d = json!({"model": "org/M", "messages": [{"role": "user", "content": "again"}, {"role": "user", "content": "hi"}]});
    assert_ne!(
        cache_key("chutes", "chat", &c),
        cache_key("chutes", "chat", &d)
    );
}

#[test]
fn key_ignores_volatile_fields_at_top_level_only() {
    let base = json!({"model": "org/M", "prompt": "p"});
    let noisy = json!({
        "model": "org/M", "prompt": "p",
        "user": "miner-7", "stream_options": {"include_usage": true},
        "request_id": "abc", "metadata": {"run": 1}
    });
    assert_eq!(
        cache_key("s", "chat", &base),
        cache_key("s", "chat", &noisy)
    );
    assert_eq!(canonical_body(&noisy), r#"{"model":"org/M","prompt":"p"}"#);
    // Nested fields of the same names are content.
    let nested = json!({"model": "org/M", "prompt": "p", "tools": [{"user": "x"}]});
    let nested2 = json!({"model": "org/M", "prompt": "p", "tools": [{"user": "y"}]});
    assert_ne!(
        cache_key("s", "chat", &nested),
        cache_key("s", "chat", &nested2)
    );
}

#[test]
fn key_depends_on_seed_service_route_and_values() {
    let body = json!({"model": "org/M", "prompt": "p", "seed": 1});
    let key = cache_key("chutes", "chat", &body);
    let mut seeded = body.clone();
    seeded["seed"] = json!(2);
    assert_ne!(key, cache_key("chutes", "chat", &seeded));
    let mut unseeded = body.clone();
    unseeded.as_object_mut().unwrap().remove("seed");
    assert_ne!(key, cache_key("chutes", "chat", &unseeded));
    assert_ne!(key, cache_key("other", "chat", &body));
    assert_ne!(key, cache_key("chutes", "search", &body));
    // Lengths are framed: moving a character between service and route
    // changes the key.
    assert_ne!(cache_key("ab", "c", &body), cache_key("a", "bc", &body));
    assert_ne!(
        key,
        cache_key(
            "chutes",
            "chat",
            &json!({"model": "org/M", "prompt": "p", "seed": "1"})
        )
    );
}

#[test]
fn canonical_body_matches_serde_json_escaping_and_numbers() {
    let value = json!({
        "z": "quote \" backslash \\ nl \n cr \r tab \t bs \u{08} ff \u{0c} nul \u{0} us \u{1f} del \u{7f} é ✓ 😀",
        "a": [1, -2, 3.5, 1e300, 0.1, null, true, false, {"y": [], "x": {}}],
        "m": {"b": 1, "a": 2, "": 3},
    });
    let canonical = canonical_body(&value);
    // serde_json (without `preserve_order`) sorts object keys and
    // prints compactly: the same text.
    let sorted: std::collections::BTreeMap<String, Value> =
        serde_json::from_value(value.clone()).unwrap();
    let mut expected = String::from("{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            expected.push(',');
        }
        expected.push_str(&serde_json::to_string(k).unwrap());
        expected.push(':');
        expected.push_str(&sorted_json(v));
    }
    expected.push('}');
    assert_eq!(canonical, expected);
    // And it parses back to the same value.
    assert_eq!(serde_json::from_str::<Value>(&canonical).unwrap(), value);
    // Scalars at top level.
    assert_eq!(canonical_body(&json!("a\"b")), r#""a\"b""#);
    assert_eq!(canonical_body(&json!(null)), "null");
}

/// Compact JSON with sorted keys, independent of `preserve_order`.
fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let sorted: std::collections::BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, sorted_json(v))).collect();
            let inner: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(sorted_json).collect();
            format!("[{}]", inner.join(","))
        }
        other => serde_json::to_string(other).unwrap(),
    }
}

#[test]
fn modes_and_outcomes_serialise_in_kebab_case() {
    assert_eq!(
        serde_json::to_string(&CacheMode::ReadOnly).unwrap(),
        "\"read-only\""
    );
    for mode in [CacheMode::On, CacheMode::Off, CacheMode::ReadOnly] {
        let text = format!("\"{mode}\"");
        assert_eq!(serde_json::from_str::<CacheMode>(&text).unwrap(), mode);
    }
    assert!(serde_json::from_str::<CacheMode>("\"readonly\"").is_err());
    assert_eq!(CacheMode::default(), CacheMode::On);
    assert_eq!(
        serde_json::to_string(&CacheOutcome::Collapsed).unwrap(),
        "\"collapsed\""
    );
    assert!(CacheOutcome::Miss.called_upstream());
    assert!(CacheOutcome::Bypass.called_upstream());
    assert!(!CacheOutcome::Hit.called_upstream());
    assert!(!CacheOutcome::Collapsed.called_upstream());
}

#[tokio::test]
async fn put_then_get() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let now = unix_now_ms();
    assert_eq!(cache.get("k", now).await.unwrap(), None);
    let answer = CachedResponse {
        status: 201,
        body: vec![0, 159, 146, 150, 255],
        content_type: "application/octet-stream".to_owned(),
    };
    assert!(cache.put("k", "chutes", &answer, TTL).await.unwrap());
    assert_eq!(cache.get("k", now).await.unwrap(), Some(answer));
    // Storing again replaces.
    assert!(cache.put("k", "chutes", &ok("new"), TTL).await.unwrap());
    assert_eq!(cache.get("k", now).await.unwrap(), Some(ok("new")));
    assert_eq!(cache.get("other", now).await.unwrap(), None);
    assert_eq!(cache.live_entries(now).await.unwrap(), 1);
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let t0 = 1_000_000;
    assert!(
        cache
            .put_at("k", "s", &ok("a"), Duration::from_secs(10), t0)
            .await
            .unwrap()
    );
    assert!(cache.get("k", t0).await.unwrap().is_some());
    assert!(cache.get("k", t0 + 9_999).await.unwrap().is_some());
    assert_eq!(cache.get("k", t0 + 10_000).await.unwrap(), None);
    assert_eq!(cache.get("k", t0 + 20_000).await.unwrap(), None);
    // A zero TTL stores nothing.
    assert!(
        !cache
            .put_at("z", "s", &ok("a"), Duration::ZERO, t0)
            .await
            .unwrap()
    );
    assert_eq!(cache.get("z", t0).await.unwrap(), None);
    // Through get_or_fetch: an expired answer is fetched again.
    let calls = Arc::new(AtomicUsize::new(0));
    let ttl = Duration::from_millis(50);
    let fetch = || counted(&calls, Duration::ZERO, Ok(ok("x")));
    let (_, first) = cache
        .get_or_fetch("e", "s", CacheMode::On, ttl, fetch())
        .await
        .unwrap();
    let (_, second) = cache
        .get_or_fetch("e", "s", CacheMode::On, ttl, fetch())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let (_, third) = cache
        .get_or_fetch("e", "s", CacheMode::On, ttl, fetch())
        .await
        .unwrap();
    assert_eq!(
        (first, second, third),
        (CacheOutcome::Miss, CacheOutcome::Hit, CacheOutcome::Miss)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn only_successful_answers_are_stored() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let now = unix_now_ms();
    for code in [100, 199, 300, 304, 400, 404, 429, 500, 503] {
        assert!(
            !cache.put("k", "s", &status(code), TTL).await.unwrap(),
            "{code}"
        );
    }
    assert_eq!(cache.get("k", now).await.unwrap(), None);
    for code in [200, 204, 299] {
        assert!(
            cache
                .put(&format!("k{code}"), "s", &status(code), TTL)
                .await
                .unwrap()
        );
    }
    assert_eq!(cache.live_entries(now).await.unwrap(), 3);
    // Through get_or_fetch: a 503 is returned, not stored, and fetched again.
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (answer, outcome) = cache
            .get_or_fetch(
                "u",
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(status(503))),
            )
            .await
            .unwrap();
        assert_eq!((answer.status, outcome), (503, CacheOutcome::Miss));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get("u", now).await.unwrap(), None);
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test]
async fn read_only_serves_hits_but_does_not_store() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (answer, outcome) = cache
        .get_or_fetch(
            "k",
            "s",
            CacheMode::ReadOnly,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("a"))),
        )
        .await
        .unwrap();
    assert_eq!((answer, outcome), (ok("a"), CacheOutcome::Miss));
    assert_eq!(cache.get("k", unix_now_ms()).await.unwrap(), None);
    cache.put("k", "s", &ok("stored"), TTL).await.unwrap();
    let (answer, outcome) = cache
        .get_or_fetch(
            "k",
            "s",
            CacheMode::ReadOnly,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("b"))),
        )
        .await
        .unwrap();
    assert_eq!((answer, outcome), (ok("stored"), CacheOutcome::Hit));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_only_does_not_collapse() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, fetch) = (
            cache.clone(),
            counted(&calls, Duration::from_millis(50), Ok(ok("a"))),
        );
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch("k", "s", CacheMode::ReadOnly, TTL, fetch)
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().1, CacheOutcome::Miss);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(cache.live_entries(unix_now_ms()).await.unwrap(), 0);
}

#[tokio::test]
async fn off_always_fetches_and_never_reads_or_stores() {
    let cache = ResponseCache::in_memory().await.unwrap();
    cache.put("k", "s", &ok("stored"), TTL).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for body in ["a", "b"] {
        let (answer, outcome) = cache
            .get_or_fetch(
                "k",
                "s",
                CacheMode::Off,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok(body))),
            )
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok(body), CacheOutcome::Bypass));
    }
    let (answer, _) = cache
        .get_or_fetch(
            "new",
            "s",
            CacheMode::Off,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("c"))),
        )
        .await
        .unwrap();
    assert_eq!(answer, ok("c"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let now = unix_now_ms();
    assert_eq!(cache.get("k", now).await.unwrap(), Some(ok("stored")));
    assert_eq!(cache.get("new", now).await.unwrap(), None);
}

#[tokio::test]
async fn fetch_errors_are_returned_and_not_stored() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let error = cache
        .get_or_fetch(
            "k",
            "s",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Err("boom".to_owned())),
        )
        .await
        .unwrap_err();
    assert_eq!(error, "boom");
    assert_eq!(cache.in_flight(), 0);
    let (answer, outcome) = cache
        .get_or_fetch(
            "k",
            "s",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("a"))),
        )
        .await
        .unwrap();
    assert_eq!((answer, outcome), (ok("a"), CacheOutcome::Miss));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_requests_make_one_upstream_call() {
    let (_dir, cache) = file_cache().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (cache, fetch) = (
            cache.clone(),
            counted(&calls, Duration::from_millis(50), Ok(ok("answer"))),
        );
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch("k", "chutes", CacheMode::On, TTL, fetch)
                .await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        let (answer, outcome) = task.await.unwrap().unwrap();
        assert_eq!(answer, ok("answer"));
        outcomes.push(outcome);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(tally(&outcomes, CacheOutcome::Miss), 1);
    assert_eq!(tally(&outcomes, CacheOutcome::Collapsed), 99);
    assert_eq!(cache.in_flight(), 0);
    // Afterwards: a hit, still one call.
    let (_, outcome) = cache
        .get_or_fetch(
            "k",
            "chutes",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("other"))),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_keys_are_not_collapsed() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (cache, fetch) = (
            cache.clone(),
            counted(&calls, Duration::from_millis(20), Ok(ok("a"))),
        );
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch(&format!("k{}", i % 4), "s", CacheMode::On, TTL, fetch)
                .await
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap().1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(tally(&outcomes, CacheOutcome::Miss), 4);
}

/// Starts a leader for "k" whose fetch is `fetch`, and returns once its
/// flight is registered.
async fn start_leader(
    cache: &ResponseCache,
    fetch: impl FnOnce()
        -> std::pin::Pin<Box<dyn Future<Output = Result<CachedResponse, String>> + Send>>
    + Send
    + 'static,
    timeout: Duration,
) -> tokio::task::JoinHandle<
    Result<Result<(CachedResponse, CacheOutcome), String>, tokio::time::error::Elapsed>,
> {
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            tokio::time::timeout(
                timeout,
                cache.get_or_fetch("k", "s", CacheMode::On, TTL, fetch),
            )
            .await
        })
    };
    while cache.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    leader
}

async fn spawn_waiters(
    cache: &ResponseCache,
    calls: &Arc<AtomicUsize>,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<(CachedResponse, CacheOutcome), String>>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (cache, fetch) = (
            cache.clone(),
            counted(calls, Duration::from_millis(50), Ok(ok("good"))),
        );
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch("k", "s", CacheMode::On, TTL, fetch)
                .await
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_recover_from_a_failed_leader() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = start_leader(
        &cache,
        counted(
            &calls,
            Duration::from_millis(50),
            Err("upstream down".to_owned()),
        ),
        Duration::from_secs(10),
    )
    .await;
    let waiters = spawn_waiters(&cache, &calls, 20).await;
    assert_eq!(leader.await.unwrap().unwrap().unwrap_err(), "upstream down");
    let mut outcomes = Vec::new();
    for task in waiters {
        let (answer, outcome) = task.await.unwrap().unwrap();
        assert_eq!(answer, ok("good"));
        outcomes.push(outcome);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(tally(&outcomes, CacheOutcome::Miss), 1);
    assert_eq!(tally(&outcomes, CacheOutcome::Collapsed), 19);
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(
        cache.get("k", unix_now_ms()).await.unwrap(),
        Some(ok("good"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_do_not_share_a_non_2xx_answer() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = start_leader(
        &cache,
        counted(&calls, Duration::from_millis(50), Ok(status(429))),
        Duration::from_secs(10),
    )
    .await;
    let waiters = spawn_waiters(&cache, &calls, 10).await;
    let (answer, outcome) = leader.await.unwrap().unwrap().unwrap();
    assert_eq!((answer.status, outcome), (429, CacheOutcome::Miss));
    for task in waiters {
        assert_eq!(task.await.unwrap().unwrap().0, ok("good"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_complete_when_the_leader_is_cancelled() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    // The leader's fetch would take 10 s; its caller gives up after 100 ms.
    let leader = start_leader(
        &cache,
        counted(&calls, Duration::from_secs(10), Ok(ok("late"))),
        Duration::from_millis(100),
    )
    .await;
    let waiters = spawn_waiters(&cache, &calls, 20).await;
    let done = tokio::time::timeout(Duration::from_secs(5), async {
        assert!(leader.await.unwrap().is_err(), "the leader should time out");
        let mut outcomes = Vec::new();
        for task in waiters {
            let (answer, outcome) = task.await.unwrap().unwrap();
            assert_eq!(answer, ok("good"));
            outcomes.push(outcome);
        }
        outcomes
    })
    .await
    .expect("waiters hang after the leader was cancelled");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(tally(&done, CacheOutcome::Miss), 1);
    assert_eq!(tally(&done, CacheOutcome::Collapsed), 19);
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_stop_waiting_after_repeated_failures() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, fetch) = (
            cache.clone(),
            counted(&calls, Duration::from_millis(30), Err("down".to_owned())),
        );
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_fetch("k", "s", CacheMode::On, TTL, fetch)
                .await
        }));
    }
    let started = std::time::Instant::now();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), "down");
    }
    // Every caller fetched once, and no caller queued behind more than
    // MAX_FAILED_LEADERS failed fetches (plus its own).
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert!(
        started.elapsed() < Duration::from_millis(30 * 6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_does_not_disturb_the_flight() {
    let cache = ResponseCache::in_memory().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = start_leader(
        &cache,
        counted(&calls, Duration::from_millis(100), Ok(ok("a"))),
        Duration::from_secs(10),
    )
    .await;
    let impatient = tokio::time::timeout(
        Duration::from_millis(10),
        cache.get_or_fetch(
            "k",
            "s",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("b"))),
        ),
    )
    .await;
    assert!(impatient.is_err());
    assert_eq!(cache.in_flight(), 1);
    let (answer, outcome) = leader.await.unwrap().unwrap().unwrap();
    assert_eq!((answer, outcome), (ok("a"), CacheOutcome::Miss));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn get_or_fetch_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = rt.block_on(ResponseCache::in_memory()).unwrap();
    let future = cache.get_or_fetch("k", "s", CacheMode::On, TTL, || async {
        Ok::<_, String>(ok("a"))
    });
    assert_send(&future);
}

#[tokio::test]
async fn answers_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    let cache = ResponseCache::open(&path).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let key = cache_key("chutes", "chat", &json!({"model": "org/M", "prompt": "p"}));
    let (_, outcome) = cache
        .get_or_fetch(
            &key,
            "chutes",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("kept"))),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    cache.close().await;
    drop(cache);

    let reopened = ResponseCache::open(&path).await.unwrap();
    let (answer, outcome) = reopened
        .get_or_fetch(
            &key,
            "chutes",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("new"))),
        )
        .await
        .unwrap();
    assert_eq!((answer, outcome), (ok("kept"), CacheOutcome::Hit));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The same folder's other migrations were applied too (one database
    // can hold the ledger and the cache).
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'gateway_%' ORDER BY name",
    )
    .fetch_all(&reopened.reader)
    .await
    .unwrap();
    assert!(tables.contains(&"gateway_cache".to_owned()), "{tables:?}");
}

/// One database file for the ledger and the cache (as the gateway's
/// `gateway.sqlite`), opened one after the other.
#[tokio::test]
async fn shares_a_file_with_the_ledger() {
    use crate::ledger::{Ledger, Reservation, utc_today};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.sqlite");
    let ledger = Ledger::open(&path).await.unwrap();
    let cache = ResponseCache::open(&path).await.unwrap();
    cache.put("k", "s", &ok("a"), TTL).await.unwrap();
    let id = ledger
        .reserve(Reservation {
            run_id: "r1".to_owned(),
            miner: "m1".to_owned(),
            service: "s".to_owned(),
            day: utc_today(),
            amount_usd: 0.5,
            run_cap_usd: 1.0,
            day_cap_usd: 1.0,
        })
        .await
        .unwrap();
    ledger.settle(id, 0.25, false).await.unwrap();
    assert_eq!(cache.get("k", unix_now_ms()).await.unwrap(), Some(ok("a")));
    cache.close().await;
    ledger.close().await;
    // Reopened in the other order: nothing left to migrate.
    let cache = ResponseCache::open(&path).await.unwrap();
    let ledger = Ledger::open(&path).await.unwrap();
    assert_eq!(cache.get("k", unix_now_ms()).await.unwrap(), Some(ok("a")));
    assert_eq!(ledger.spent_usd("r1", "s").await.unwrap(), 0.25);
    ledger.check_consistency().await.unwrap();
}

#[tokio::test]
async fn two_handles_on_one_file_share_answers() {
    let (dir, first) = file_cache().await;
    let second = ResponseCache::open(&dir.path().join("cache.sqlite"))
        .await
        .unwrap();
    first.put("k", "s", &ok("shared"), TTL).await.unwrap();
    assert_eq!(
        second.get("k", unix_now_ms()).await.unwrap(),
        Some(ok("shared"))
    );
}

#[tokio::test]
async fn purge_expired_deletes_only_expired_rows() {
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        purge_interval: None,
        ..CacheOptions::default()
    };
    let cache = ResponseCache::open_with(&dir.path().join("cache.sqlite"), &options)
        .await
        .unwrap();
    let t0 = 5_000_000;
    for i in 0..2_500 {
        let ttl = Duration::from_secs(if i % 5 == 0 { 100 } else { 10 });
        cache
            .put_at(&format!("k{i}"), "s", &ok("a"), ttl, t0)
            .await
            .unwrap();
    }
    assert_eq!(cache.purge_expired(t0 + 9_999).await.unwrap(), 0);
    assert_eq!(cache.live_entries(t0).await.unwrap(), 2_500);
    // 2,000 rows expired: more than one batch.
    assert_eq!(cache.purge_expired(t0 + 10_000).await.unwrap(), 2_000);
    assert_eq!(cache.purge_expired(t0 + 10_000).await.unwrap(), 0);
    assert_eq!(cache.live_entries(t0).await.unwrap(), 500);
    assert!(cache.get("k0", t0 + 50_000).await.unwrap().is_some());
    assert_eq!(cache.get("k1", t0).await.unwrap(), None);
    assert_eq!(cache.purge_expired(t0 + 100_000).await.unwrap(), 500);
    assert_eq!(cache.live_entries(0).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_task_purges_expired_rows() {
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        purge_interval: Some(Duration::from_millis(20)),
        ..CacheOptions::default()
    };
    let cache = ResponseCache::open_with(&dir.path().join("cache.sqlite"), &options)
        .await
        .unwrap();
    cache
        .put("short", "s", &ok("a"), Duration::from_millis(30))
        .await
        .unwrap();
    cache.put("long", "s", &ok("b"), TTL).await.unwrap();
    let all = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM gateway_cache")
            .fetch_one(&cache.reader)
            .await
            .unwrap()
    };
    assert_eq!(all().await, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(all().await, 1);
    cache.close().await;
}

/// A file cache with `options`, and a connection that can take the
/// file's write lock from the cache's writer.
async fn blockable_cache(
    options: &CacheOptions,
) -> (tempfile::TempDir, ResponseCache, sqlx::SqliteConnection) {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    let cache = ResponseCache::open_with(&path, options).await.unwrap();
    let blocker =
        sqlx::SqliteConnection::connect_with(&file_options(&path, Duration::from_secs(5), false))
            .await
            .unwrap();
    (dir, cache, blocker)
}

async fn rows(cache: &ResponseCache) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM gateway_cache")
        .fetch_one(&cache.reader)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_answer_is_served_from_memory_while_its_write_is_queued() {
    // A front too small to hold any answer: only the queue can serve it.
    let options = CacheOptions {
        memory_bytes: 1,
        ..CacheOptions::default()
    };
    let (_dir, cache, mut blocker) = blockable_cache(&options).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (_, first) = cache
        .get_or_fetch(
            "k",
            "s",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("queued"))),
        )
        .await
        .unwrap();
    let (answer, second) = cache
        .get_or_fetch(
            "k",
            "s",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("again"))),
        )
        .await
        .unwrap();
    assert_eq!((first, second), (CacheOutcome::Miss, CacheOutcome::Hit));
    assert_eq!(answer, ok("queued"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Not in the file yet: the writer waits for the lock.
    assert_eq!(rows(&cache).await, 0);
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    cache.flush().await;
    assert_eq!(rows(&cache).await, 1);
    // Written, it is still found (now in the file).
    assert_eq!(
        cache.get("k", unix_now_ms()).await.unwrap(),
        Some(ok("queued"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_drops_writes_instead_of_waiting() {
    let options = CacheOptions {
        write_queue: 2,
        write_linger: Duration::ZERO,
        ..CacheOptions::default()
    };
    let (_dir, cache, mut blocker) = blockable_cache(&options).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let answers = 20;
    // The writer is stuck on the lock for up to 5 s; no request waits
    // for it.
    tokio::time::timeout(Duration::from_secs(2), async {
        for i in 0..answers {
            let (_, outcome) = cache
                .get_or_fetch(
                    &format!("k{i}"),
                    "s",
                    CacheMode::On,
                    TTL,
                    counted(&calls, Duration::ZERO, Ok(ok("a"))),
                )
                .await
                .unwrap();
            assert_eq!(outcome, CacheOutcome::Miss);
        }
    })
    .await
    .expect("a request waited for the writer");
    let dropped = cache.dropped_writes();
    // At most the writer's batch and the queue's two were taken.
    assert!(
        (1..=answers).contains(&dropped) && dropped >= answers - 4,
        "{dropped}"
    );
    // Every answer is still served, from memory.
    for i in 0..answers {
        assert!(
            cache
                .get(&format!("k{i}"), unix_now_ms())
                .await
                .unwrap()
                .is_some()
        );
    }
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    cache.flush().await;
    assert_eq!(
        rows(&cache).await,
        i64::try_from(answers - dropped).unwrap()
    );
    assert_eq!(cache.dropped_writes_counter().get(), dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_the_queued_answers_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    // Without the flush, the batch would wait a minute.
    let options = CacheOptions {
        write_linger: Duration::from_secs(60),
        ..CacheOptions::default()
    };
    let cache = ResponseCache::open_with(&path, &options).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["a", "b", "c"] {
        cache
            .get_or_fetch(
                key,
                "s",
                CacheMode::On,
                TTL,
                counted(&calls, Duration::ZERO, Ok(ok(key))),
            )
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    cache.close().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let reopened = ResponseCache::open(&path).await.unwrap();
    for key in ["a", "b", "c"] {
        assert_eq!(
            reopened.get(key, unix_now_ms()).await.unwrap(),
            Some(ok(key))
        );
    }
}

/// A fetch that must not run: the answer is expected from the cache.
fn not_called()
-> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<CachedResponse, String>> + Send>>
+ Send
+ 'static {
    || Box::pin(async { Err("fetched, but the answer was in the file".to_owned()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_another_handle_stores_are_served_once_the_index_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    let options = CacheOptions {
        key_index_refresh: Some(Duration::from_millis(20)),
        ..CacheOptions::default()
    };
    let first = ResponseCache::open_with(&path, &options).await.unwrap();
    first.put("on-file", "s", &ok("old"), TTL).await.unwrap();
    // Opened after: its index is loaded with what the file holds.
    let second = ResponseCache::open_with(&path, &options).await.unwrap();
    let (answer, outcome) = second
        .get_or_fetch("on-file", "s", CacheMode::On, TTL, not_called())
        .await
        .unwrap();
    assert_eq!((answer, outcome), (ok("old"), CacheOutcome::Hit));
    // Stored by the first after the second opened: found after a
    // catch-up.
    let calls = Arc::new(AtomicUsize::new(0));
    first
        .get_or_fetch(
            "new",
            "s",
            CacheMode::On,
            TTL,
            counted(&calls, Duration::ZERO, Ok(ok("new"))),
        )
        .await
        .unwrap();
    first.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answer, outcome) = second
        .get_or_fetch("new", "s", CacheMode::On, TTL, not_called())
        .await
        .unwrap();
    assert_eq!((answer, outcome), (ok("new"), CacheOutcome::Hit));
    // A purged key leaves the index, and a key stored again is found.
    first
        .put_at("short", "s", &ok("a"), Duration::from_secs(1), 1_000)
        .await
        .unwrap();
    assert_eq!(first.purge_expired(unix_now_ms()).await.unwrap(), 1);
    assert!(!first.index.may_hold("short"));
    first.put("short", "s", &ok("b"), TTL).await.unwrap();
    first.front.clear();
    let (answer, _) = first
        .get_or_fetch("short", "s", CacheMode::On, TTL, not_called())
        .await
        .unwrap();
    assert_eq!(answer, ok("b"));
}

#[tokio::test]
async fn past_its_capacity_the_index_lets_every_miss_read_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sqlite");
    let options = CacheOptions {
        key_index_entries: 2,
        key_index_refresh: None,
        ..CacheOptions::default()
    };
    let writer = ResponseCache::open_with(&path, &options).await.unwrap();
    for key in ["a", "b", "c"] {
        writer.put(key, "s", &ok(key), TTL).await.unwrap();
    }
    let reader = ResponseCache::open_with(&path, &options).await.unwrap();
    assert!(reader.index.may_hold("never stored"));
    for key in ["a", "b", "c"] {
        let (answer, outcome) = reader
            .get_or_fetch(key, "s", CacheMode::On, TTL, not_called())
            .await
            .unwrap();
        assert_eq!((answer, outcome), (ok(key), CacheOutcome::Hit));
    }
}
