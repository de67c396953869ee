//! `sooth backtest` and `sooth validator` as a user runs them: the ForecastBench file through the
//! whole daemon, checked against figures computed here, and a backtest killed part-way and
//! resumed, checked against an uninterrupted one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::day::signal;
use common::{file_with, forecastbench, run, sooth};
use serde_json::Value;
use sooth_test_postgres::TestSchema;
use sooth_validator::store::{Store, StoreOptions};

/// One agent's line of the printed leaderboard.
#[derive(Debug)]
struct Line {
    rank: usize,
    brier_101: f64,
    events_101: usize,
    brier_all: f64,
    events_all: usize,
    imputed_all: usize,
    weight: f64,
}

fn leaderboard(stdout: &str) -> HashMap<String, Line> {
    let mut lines = HashMap::new();
    let mut in_table = false;
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"rank") {
            in_table = true;
            continue;
        }
        if !in_table || fields.len() != 10 {
            continue;
        }
        let number = |index: usize| fields[index].parse::<f64>().unwrap();
        let count = |index: usize| fields[index].parse::<usize>().unwrap();
        lines.insert(
            fields[1].to_owned(),
            Line {
                rank: count(0),
                brier_101: number(3),
                events_101: count(4),
                brier_all: number(6),
                events_all: count(7),
                imputed_all: count(8),
                weight: number(9),
            },
        );
    }
    assert!(!lines.is_empty(), "no leaderboard in:\n{stdout}");
    lines
}

/// A ForecastBench row as this test reads it, independently of the validator's parser.
struct Question {
    id: String,
    market_prob: Option<f64>,
    resolution_date: String,
    outcome: f64,
}

fn questions(path: &Path) -> Vec<Question> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            Question {
                id: row["id"].as_str().unwrap().to_owned(),
                market_prob: row["market_prob"].as_f64(),
                resolution_date: row["resolution_date"].as_str().unwrap().to_owned(),
                outcome: row["outcome"].as_f64().unwrap(),
            }
        })
        .collect()
}

fn mean_brier<'a>(
    questions: impl Iterator<Item = &'a Question>,
    forecast: impl Fn(&Question) -> f64,
) -> f64 {
    let scores: Vec<f64> = questions
        .map(|q| (forecast(q).clamp(0.01, 0.99) - q.outcome).powi(2))
        .collect();
    scores.iter().sum::<f64>() / scores.len() as f64
}

/// The market-price baseline's forecast: the market price, else its base rate.
fn baseline(question: &Question) -> f64 {
    question.market_prob.unwrap_or(0.35)
}

#[test]
fn a_forecastbench_backtest_scores_the_market_baseline_and_always_half_as_computed_here() {
    let Some(events) = forecastbench() else {
        return;
    };
    let questions = questions(&events);
    assert_eq!(questions.len(), 560);
    // The file's README figures, recomputed here.
    let all_market = mean_brier(questions.iter(), baseline);
    assert!((all_market - 0.0589).abs() < 5e-5, "{all_market}");
    // The competition's score: the last 101 by resolution instant, then id.
    let mut ordered: Vec<&Question> = questions.iter().collect();
    ordered.sort_by(|a, b| {
        (a.resolution_date.as_str(), a.id.as_str())
            .cmp(&(b.resolution_date.as_str(), b.id.as_str()))
    });
    let last_101 = mean_brier(ordered[ordered.len() - 101..].iter().copied(), baseline);

    let out = tempfile::tempdir().unwrap();
    let output = run(sooth()
        .arg("backtest")
        .arg("--events")
        .arg(&events)
        .arg("--agents")
        .arg(sooth_test_agents::market_baseline())
        .arg(sooth_test_agents::always_half())
        .arg("--out")
        .arg(out.path()))
    .ok();
    let board = leaderboard(&output.stdout);
    let market = &board["market_baseline"];
    let half = &board["always_half"];
    assert_eq!(market.events_all, 560, "{}", output.stdout);
    assert_eq!(market.imputed_all, 0);
    assert_eq!(
        format!("{:.4}", market.brier_all),
        format!("{all_market:.4}")
    );
    assert_eq!(market.events_101, 101);
    assert_eq!(format!("{:.4}", market.brier_101), format!("{last_101:.4}"));
    assert_eq!(half.brier_all, 0.25);
    assert_eq!(half.brier_101, 0.25);
    assert_eq!((market.rank, market.weight), (1, 1.0));
    assert_eq!((half.rank, half.weight), (2, 0.0));

    let json: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("leaderboard.json")).unwrap())
            .unwrap();
    let first = &json["rows"][0];
    assert_eq!(first["hotkey"], "market_baseline");
    assert!((first["mean_brier_all"].as_f64().unwrap() - all_market).abs() < 1e-12);
    assert!((first["mean_brier_101"].as_f64().unwrap() - last_101).abs() < 1e-12);
    let csv = std::fs::read_to_string(out.path().join("leaderboard.csv")).unwrap();
    assert!(csv.starts_with("rank,hotkey,uid,mean_brier_101,"), "{csv}");
    assert_eq!(csv.lines().count(), 3);
}

/// The arguments of `sooth backtest` over `events` with the market baseline and the
/// always-0.5 agent, keeping its data in `data_dir`.
fn backtest_args(events: &Path, data_dir: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["backtest".into(), "--events".into()];
    args.push(events.into());
    args.push("--agents".into());
    args.push(sooth_test_agents::market_baseline().into());
    args.push(sooth_test_agents::always_half().into());
    args.push("--data-dir".into());
    args.push(data_dir.into());
    args
}

/// The scores of every event and the weights history of a backtest's store, as text to compare.
fn recorded(data_dir: &Path, ids: &[String]) -> String {
    recorded_at(
        &format!("sqlite://{}", data_dir.join("validator.sqlite").display()),
        ids,
    )
}

/// [`recorded`] of the store at a database URL.
fn recorded_at(url: &str, ids: &[String]) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::connect(url, &StoreOptions::default()).await.unwrap();
        let mut text = String::new();
        for id in ids {
            let mut scores = store.event_scores(id).await.unwrap();
            scores.sort_by(|a, b| a.hotkey.cmp(&b.hotkey));
            text.push_str(&format!("{id}: {scores:?}\n"));
        }
        text.push_str(&format!("{:?}\n", store.latest_weights().await.unwrap()));
        text.push_str(&format!(
            "{:?}\n",
            store.weights_history_len().await.unwrap()
        ));
        store.close().await;
        text
    })
}

#[test]
fn a_backtest_killed_part_way_resumes_to_the_uninterrupted_result() {
    let Some(events) = forecastbench() else {
        return;
    };
    let ids: Vec<String> = questions(&events).into_iter().map(|q| q.id).collect();
    let backtest = |data_dir: &Path| {
        let mut command = sooth();
        command
            .args(backtest_args(&events, data_dir))
            .args(["--concurrency", "2"]);
        command
    };
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = run(&mut backtest(whole.path())).ok();

    let resumed = tempfile::tempdir().unwrap();
    let mut child = backtest(resumed.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has scored something and before it ends.
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_mid_run = loop {
        assert!(
            Instant::now() < deadline,
            "the backtest never scored anything"
        );
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        // Frozen while the test looks: on a loaded machine the look is slow, and the
        // backtest must not run to its end meanwhile.
        signal(&child, "STOP");
        if scored_something(resumed.path()) {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        signal(&child, "CONT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        killed_mid_run,
        "the backtest ended before it could be killed"
    );
    // Killed part-way: some runs recorded, not all.
    let runs_at_kill = runs_recorded(resumed.path(), &ids);
    assert!(
        runs_at_kill > 0 && runs_at_kill < 2 * ids.len(),
        "{runs_at_kill} runs at the kill"
    );
    let restarted = run(&mut backtest(resumed.path())).ok();
    assert_eq!(runs_recorded(resumed.path(), &ids), 2 * ids.len());

    assert_eq!(
        leaderboard_text(&restarted.stdout),
        leaderboard_text(&uninterrupted.stdout)
    );
    assert_eq!(recorded(resumed.path(), &ids), recorded(whole.path(), &ids));
}

#[test]
fn a_backtest_on_postgresql_gives_the_sqlite_leaderboard_scores_and_weights_bit_for_bit() {
    let Some(events) = forecastbench() else {
        return;
    };
    let ids: Vec<String> = questions(&events).into_iter().map(|q| q.id).collect();
    let schema = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(TestSchema::create());
    let backtest = |data_dir: &Path, out: &Path, database_url: Option<&str>| {
        let mut command = sooth();
        command
            .args(backtest_args(&events, data_dir))
            .arg("--benchmark")
            .arg(sooth_test_agents::always_half())
            // The verification queue too: probe runs, originality, verdicts.
            .arg("--probe-events")
            .arg("50")
            .arg("--out")
            .arg(out);
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        run(&mut command).ok()
    };
    let (sqlite_dir, sqlite_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (postgres_dir, postgres_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on_sqlite = backtest(sqlite_dir.path(), sqlite_out.path(), None);
    let on_postgres = backtest(postgres_dir.path(), postgres_out.path(), Some(schema.url()));
    // The PostgreSQL run kept nothing in its data directory's database file.
    assert!(!postgres_dir.path().join("validator.sqlite").exists());

    // The printed leaderboard (less the lines naming each run's own output directory).
    let printed = |stdout: &str| {
        leaderboard_text(stdout)
            .lines()
            .filter(|line| !line.starts_with("wrote "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(printed(&on_postgres.stdout), printed(&on_sqlite.stdout));
    // Every figure, the benchmark's and the meta-model's included, to the last bit.
    let json = |out: &Path| std::fs::read_to_string(out.join("leaderboard.json")).unwrap();
    assert_eq!(json(postgres_out.path()), json(sqlite_out.path()));
    // The pages show the benchmark and the meta-model's pools with the miners, MMC included.
    let page = |out: &Path| std::fs::read_to_string(out.join("site/index.html")).unwrap();
    assert_eq!(page(postgres_out.path()), page(sqlite_out.path()));
    assert!(page(sqlite_out.path()).contains("meta:linear"));
    let csv = |out: &Path| std::fs::read_to_string(out.join("leaderboard.csv")).unwrap();
    assert_eq!(csv(postgres_out.path()), csv(sqlite_out.path()));
    assert_eq!(
        recorded_at(schema.url(), &ids),
        recorded(sqlite_dir.path(), &ids)
    );
}

fn leaderboard_text(stdout: &str) -> String {
    stdout
        .lines()
        .skip_while(|line| !line.starts_with("leaderboard"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many runs the backtest in `data_dir` has recorded on the events `ids`.
fn runs_recorded(data_dir: &Path, ids: &[String]) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = sooth_validator::store::Store::open(&data_dir.join("validator.sqlite"))
            .await
            .unwrap();
        let mut count = 0;
        for id in ids {
            count += store.runs_of_event(id).await.unwrap().len();
        }
        store.close().await;
        count
    })
}

/// Whether the backtest in `data_dir` has recorded weights yet: read while it runs, or while
/// it is frozen, so read-only (a reader of a WAL database waits for no writer).
fn scored_something(data_dir: &Path) -> bool {
    let path = data_dir.join("validator.sqlite");
    if !path.exists() {
        return false;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true);
        let Ok(mut connection) = sqlx::ConnectOptions::connect(&options).await else {
            return false;
        };
        let scored: Result<i64, _> =
            sqlx::query_scalar("SELECT COUNT(*) FROM validator_weights_history")
                .fetch_one(&mut connection)
                .await;
        let _ = sqlx::Connection::close(connection).await;
        scored.is_ok_and(|count| count > 0)
    })
}

#[test]
fn a_backtest_refuses_bad_input_with_a_clear_message() {
    let (_dir, empty) = file_with("empty.jsonl", "");
    run(sooth()
        .arg("backtest")
        .arg("--events")
        .arg(&empty)
        .arg("--agents")
        .arg(sooth_test_agents::always_half()))
    .fails_with("holds no events");
    let (_dir2, events) = file_with(
        "e.jsonl",
        r#"{"id": "a", "title": "T?", "created_at": "2025-03-01T00:00:00Z"}"#,
    );
    let (_dir3, not_wasm) = file_with("bogus.wasm", "not a component");
    run(sooth()
        .arg("backtest")
        .arg("--events")
        .arg(&events)
        .arg("--agents")
        .arg(&not_wasm))
    .fails_with("agent bogus");
    // A gateway configuration that is not there, or with workers, who call their own.
    let absent = _dir3.path().join("absent-gateway.toml");
    let with_gateway = || {
        let mut command = sooth();
        command
            .arg("backtest")
            .arg("--events")
            .arg(&events)
            .arg("--agents")
            .arg(sooth_test_agents::always_half())
            .arg("--gateway-config")
            .arg(&absent);
        command
    };
    run(&mut with_gateway()).fails_with("absent-gateway.toml");
    run(with_gateway().args(["--database-url", "postgres://h/db", "--workers"]))
        .fails_with("cannot be used with");
}

#[test]
fn an_unreachable_postgresql_is_named_without_its_password() {
    let (_dir, events) = file_with(
        "e.jsonl",
        r#"{"id": "a", "title": "T?", "created_at": "2025-03-01T00:00:00Z"}"#,
    );
    // Port 9 (discard) has no server on the test machines.
    let url = "postgres://sooth:hunter2@127.0.0.1:9/sooth";
    let output = run(sooth()
        .arg("backtest")
        .arg("--events")
        .arg(&events)
        .arg("--agents")
        .arg(sooth_test_agents::always_half())
        .arg("--database-url")
        .arg(url))
    .fails_with(
        "cannot connect to the validator database at postgres://sooth:***@127.0.0.1:9/sooth",
    );
    assert!(!output.stderr.contains("hunter2"), "{}", output.stderr);
    assert!(output.stderr.contains("refused"), "{}", output.stderr);

    // The same from the validator's configuration, which must name PostgreSQL.
    let (dir, config) = file_with(
        "validator.toml",
        &format!("data_dir = \"d\"\ndatabase_url = \"{url}\"\n"),
    );
    let output = run(sooth().args(["validator", "run", "--config"]).arg(&config))
        .fails_with("postgres://sooth:***@127.0.0.1:9/sooth");
    assert!(!output.stderr.contains("hunter2"), "{}", output.stderr);
    std::fs::write(
        dir.path().join("validator.toml"),
        "data_dir = \"d\"\ndatabase_url = \"mysql://h/db\"\n",
    )
    .unwrap();
    run(sooth().args(["validator", "run", "--config"]).arg(&config))
        .fails_with("database_url must be a PostgreSQL URL");
}

#[test]
fn a_validator_configuration_with_an_unknown_key_is_refused_naming_it() {
    let (_dir, config) = file_with(
        "validator.toml",
        "data_dir = \"d\"\n[competition]\nslot = 3\n",
    );
    run(sooth().args(["validator", "run", "--config"]).arg(&config)).fails_with("slot");
}

#[test]
fn a_full_disk_stops_the_backtest_with_a_clear_error_and_nothing_half_written() {
    let Some(events) = forecastbench() else {
        return;
    };
    let ids: Vec<String> = questions(&events).into_iter().map(|q| q.id).collect();
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = run(sooth().args(backtest_args(&events, whole.path()))).ok();

    // Files may not grow past 600 KiB: the database fills up part-way through the replay.
    // (SIGXFSZ is ignored so that a write past the limit fails instead of killing the process.)
    let full = tempfile::tempdir().unwrap();
    let mut limited = std::process::Command::new("bash");
    limited
        .arg("-c")
        .arg("ulimit -f 600; trap '' XFSZ; exec \"$@\"")
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_sooth"))
        .args(backtest_args(&events, full.path()));
    let failed = run(&mut limited).fails_with("error:");
    assert!(
        failed.stderr.contains("validator database error"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stdout
            .lines()
            .all(|line| !line.starts_with("leaderboard"))
    );

    // With room again, the same data directory resumes to the uninterrupted result.
    let resumed = run(sooth().args(backtest_args(&events, full.path()))).ok();
    assert_eq!(
        leaderboard_text(&resumed.stdout),
        leaderboard_text(&uninterrupted.stdout)
    );
    assert_eq!(recorded(full.path(), &ids), recorded(whole.path(), &ids));
}

#[test]
fn a_backtest_with_a_probe_set_verifies_its_agents_and_a_copy_does_not_run() {
    let Some(events) = forecastbench() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let signal = sooth_test_agents::signal_agent(&[]);
    // The same agent with other bytes: a custom section named "copy" appended.
    let mut copy = std::fs::read(&signal).unwrap();
    copy.extend_from_slice(&[0, 5, 4, b'c', b'o', b'p', b'y']);
    let copy_path = dir.path().join("copy.wasm");
    std::fs::write(&copy_path, copy).unwrap();
    let output = run(sooth()
        .arg("backtest")
        .arg("--events")
        .arg(&events)
        .args(["--probe-events", "200", "--agents"])
        .arg(&signal)
        .arg(&copy_path)
        .arg(sooth_test_agents::market_baseline()))
    .ok();
    assert!(
        output.stdout.contains("agent signal_agent: verified"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("agent market_baseline: verified"),
        "{}",
        output.stdout
    );
    let rejected = output
        .stdout
        .lines()
        .find(|line| line.starts_with("agent copy: rejected"))
        .unwrap_or_else(|| panic!("{}", output.stdout));
    assert!(
        rejected.contains("not original") && rejected.contains("signal_agent"),
        "{rejected}"
    );
    // The 360 events after the probe set were replayed. The copy stays registered, as a live
    // validator keeps a miner whose upload it rejected, but never ran: every event imputed.
    let board: Vec<Vec<&str>> = output
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("rank"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(board.len(), 3, "{}", output.stdout);
    for row in &board {
        // rank, miner, uid, brier-101, events, imputed, brier-all, events, imputed, weight
        assert_eq!(row[7], "360", "{row:?}");
        let imputed = if row[1] == "copy" { "360" } else { "0" };
        assert_eq!(row[8], imputed, "{row:?}");
    }
}
