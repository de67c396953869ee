//! The scale-out as an operator runs it, each part a process of its own on one PostgreSQL
//! database: a scheduler (`sooth backtest --workers`, the daemon on a simulated clock) and three
//! runner workers (`sooth runner`). One worker is killed with SIGKILL while it holds runs; the
//! leaderboard, the pages, every score and the weights are still the single-process SQLite
//! backtest's, every run is recorded exactly once, `sooth validator status` lists the workers
//! and what they did, and the workers left drain and exit on SIGTERM. Then a worker that loses
//! the database mid-day, and workers whose hosts' clocks are hours off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::day::{
    Day, FAKETIME, drain, drain_survivors, signal, skewed, wait_with_deadline, worker,
};
use common::forwarder::{Forwarder, through};
use common::{run, sooth};

/// The page files that must be the reference run's, byte for byte.
const OUTPUT: [&str; 3] = ["leaderboard.json", "leaderboard.csv", "site/index.html"];

/// The day of these tests: two agents and a benchmark, its reference run done.
fn prepare() -> Option<Day> {
    let day = Day::new(
        vec![
            sooth_test_agents::market_baseline(),
            sooth_test_agents::always_half(),
        ],
        sooth_test_agents::always_half(),
    )?;
    day.run_reference(|_| {});
    Some(day)
}

#[test]
fn three_workers_one_killed_mid_run_give_the_single_process_results() {
    let Some(day) = prepare() else {
        return;
    };
    let (runtime, url, dir) = (&day.runtime, day.url(), day.dir());

    // Workers may start before the scheduler: they wait for it.
    let names = ["w0", "w1", "w2"];
    let workers: Vec<Child> = names
        .iter()
        .map(|id| day.start_worker(url, id, "", &[]))
        .collect();
    let mut scheduler = day.start_scheduler();

    // Kill a worker while it holds runs (the first seen to have recorded some).
    let store = day.store();
    let (victim, held_at_kill) =
        day.kill_a_worker_holding_runs(&store, &mut scheduler, &workers, &names, 10);
    // The same results as one process on SQLite, to the last bit.
    day.scheduled_as_the_reference(&mut scheduler, &OUTPUT);
    day.same_scores_runs_and_weights(&store);

    // Exactly once: the workers' records add up to the runs and benchmark forecasts stored.
    let recorded = runtime.block_on(store.workers()).unwrap();
    for w in &recorded {
        eprintln!(
            "{}: claimed {}, completed {}, expired {} ({} held {held_at_kill} when killed)",
            w.registration.worker_id, w.claimed, w.completed, w.expired, names[victim]
        );
    }
    let completed: u64 = recorded.iter().map(|w| w.completed).sum();
    assert_eq!(completed, day.runs_owed(), "{recorded:?}");
    // What the killed worker held was taken over once its leases ended.
    assert!(
        worker(&recorded, names[victim]).expired >= held_at_kill,
        "{recorded:?}"
    );

    // The operator's view.
    let config = dir.join("validator.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"status-data\"\ndatabase_url = \"{url}\"\n"),
    )
    .unwrap();
    let status = run(sooth()
        .args(["validator", "status", "--config"])
        .arg(&config))
    .ok();
    for id in names {
        assert!(status.stdout.contains(id), "{}", status.stdout);
    }
    assert!(
        status.stdout.contains("0 waiting, 0 leased"),
        "{}",
        status.stdout
    );

    // The workers left drain and exit on SIGTERM.
    drain_survivors(&day, &store, workers, &names, victim);
    runtime.block_on(store.close());
}

#[test]
fn a_worker_that_loses_the_database_mid_day_pauses_and_resumes_recording_each_run_once() {
    let Some(day) = prepare() else {
        return;
    };
    let (runtime, url) = (&day.runtime, day.url());

    // The database lost mid-day, as a worker sees it.
    let (_, target) = through(url, "127.0.0.1", 0);
    let outage = Forwarder::start(runtime, "127.0.0.1:0", target);
    let (worker_url, _) = through(url, "127.0.0.1", outage.port);
    let mut lone = day.start_worker(&worker_url, "lone", "", &[]);
    let mut scheduler = day.start_scheduler();
    let store = day.store();
    // The database goes away while the worker holds runs (frozen until the test sees it
    // hold some), for longer than the lease: what it held is no longer its own when the
    // database comes back.
    let deadline = Instant::now() + Duration::from_secs(300);
    let held = loop {
        assert!(Instant::now() < deadline, "the worker never held runs");
        let started = runtime
            .block_on(store.workers())
            .unwrap_or_default()
            .iter()
            .any(|w| w.completed >= 100);
        if started {
            signal(&lone, "STOP");
            // Once what it sent before it froze has ended at the server.
            std::thread::sleep(Duration::from_millis(300));
            let held = worker(&runtime.block_on(store.workers()).unwrap(), "lone").leased;
            if held > 0 {
                outage.set_cut(true);
                signal(&lone, "CONT");
                break held;
            }
            signal(&lone, "CONT");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_secs(5));
    let during = worker(&runtime.block_on(store.workers()).unwrap(), "lone").completed;
    outage.set_cut(false);

    // The same results as one process on SQLite, to the last bit.
    day.scheduled_as_the_reference(&mut scheduler, &OUTPUT);
    let lone_record = worker(&runtime.block_on(store.workers()).unwrap(), "lone").clone();
    let runs = day.runs_owed();
    // Nothing recorded twice, nothing lost: every run and benchmark forecast once, by the one
    // worker, which went on after the outage.
    assert_eq!(lone_record.completed, runs, "{lone_record:?}");
    assert!(during < runs, "the outage came after the last run");
    // What it held through the outage was claimed again and run again.
    assert!(lone_record.claimed >= runs + held, "{lone_record:?}");
    signal(&lone, "TERM");
    let exit = wait_with_deadline(&mut lone, Duration::from_secs(30), "the worker's drain");
    assert!(exit.success());
    let log = day.worker_log("lone");
    assert!(log.contains("the database may be unreachable"), "{log}");
    let dropped = format!(
        "{} dropped after their lease ended",
        lone_record.claimed - runs
    );
    assert!(log.contains(&dropped), "{dropped:?} in {log}");
    runtime.block_on(store.close());
}

/// How far ahead of this process's clock the first timestamp `log` printed is, in minutes.
fn minutes_ahead(log: &str) -> i64 {
    let stamp = log
        .lines()
        .find_map(|line| {
            let first = line.split_whitespace().next()?;
            chrono::DateTime::parse_from_rfc3339(first).ok()
        })
        .unwrap_or_else(|| panic!("no timestamp in {log}"));
    (stamp.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes()
}

#[test]
fn workers_whose_clocks_are_hours_off_share_a_day_without_a_lease_cut_short_or_stretched() {
    if !std::path::Path::new(FAKETIME).exists() {
        println!("skipped: {FAKETIME} is absent (apt-get install faketime)");
        return;
    }
    let Some(day) = prepare() else {
        return;
    };
    let (runtime, url) = (&day.runtime, day.url());
    // One host's clock an hour fast, the other's an hour slow. Were leases measured by the
    // hosts' clocks, the slow one's would have ended before they began, and the fast one would
    // take them over at once.
    let names = ["fast", "slow"];
    let workers: Vec<Child> = [("fast", "+1h"), ("slow", "-1h")]
        .iter()
        .map(|(id, offset)| day.start_worker(url, id, "", &skewed(offset)))
        .collect();
    let mut scheduler = day.start_scheduler();
    day.scheduled_as_the_reference(&mut scheduler, &OUTPUT);
    let store = day.store();
    day.same_scores_runs_and_weights(&store);
    let recorded = runtime.block_on(store.workers()).unwrap();
    let completed: u64 = recorded.iter().map(|w| w.completed).sum();
    assert_eq!(completed, day.runs_owed(), "{recorded:?}");
    for id in names {
        let record = worker(&recorded, id);
        assert!(record.completed > 0, "{record:?}");
        assert_eq!(
            (record.expired, record.claimed),
            (0, record.completed),
            "{record:?}"
        );
    }
    let mut survivors: Vec<(&str, Child)> = names.iter().copied().zip(workers).collect();
    drain(&day, &store, &mut survivors);
    // The skew was real: each worker's own log is stamped an hour off.
    let (fast, slow) = (
        minutes_ahead(&day.worker_log("fast")),
        minutes_ahead(&day.worker_log("slow")),
    );
    assert!((55..=65).contains(&fast), "{fast} minutes ahead");
    assert!((-65..=-55).contains(&slow), "{slow} minutes ahead");
    runtime.block_on(store.close());
}
