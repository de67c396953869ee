//! The scale-out as an operator runs it, each part a process of its own on one PostgreSQL
//! database: a scheduler (`sooth backtest --workers`, the daemon on a simulated clock) and three
//! runner workers (`sooth runner`). One worker is killed with SIGKILL while it holds runs; the
//! leaderboard, the pages, every score and the weights are still the single-process SQLite
//! backtest's, every run is recorded exactly once, `sooth validator status` lists the workers
//! and what they did, and the workers left drain and exit on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{forecastbench, run, sooth};
use sooth_test_postgres::TestSchema;
use sooth_validator::store::{Store, StoreOptions, WorkerRecord, WorkerState};

/// `sooth backtest` of the ForecastBench file with two agents and a benchmark, written to `out`.
fn backtest(events: &Path, data_dir: &Path, out: &Path) -> Command {
    let mut command = sooth();
    command
        .arg("backtest")
        .arg("--events")
        .arg(events)
        .arg("--agents")
        .arg(sooth_test_agents::market_baseline())
        .arg(sooth_test_agents::always_half())
        .arg("--benchmark")
        .arg(sooth_test_agents::always_half())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--out")
        .arg(out);
    command
}

/// A runner worker `id` on the database at `url`, its output in `dir/ID.log`.
fn start_worker(dir: &Path, url: &str, id: &str) -> Child {
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "database_url = \"{url}\"\nworker_id = \"{id}\"\ncache_dir = \"{id}-cache\"\n\
             concurrency = 2\nlease_secs = 3\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{id}.log"))).unwrap();
    sooth()
        .arg("runner")
        .arg("--config")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

fn wait_with_deadline(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} did not end in {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn worker<'a>(workers: &'a [WorkerRecord], id: &str) -> &'a WorkerRecord {
    workers
        .iter()
        .find(|worker| worker.registration.worker_id == id)
        .unwrap_or_else(|| panic!("{id} is not registered: {workers:?}"))
}

/// A day to schedule: the ForecastBench file with its single-process SQLite backtest done (its
/// output in `reference-out`), a directory, and a schema of its own on the test server.
struct Day {
    events: PathBuf,
    runtime: tokio::runtime::Runtime,
    schema: TestSchema,
    dir: tempfile::TempDir,
}

impl Day {
    /// `None` without the ForecastBench file.
    fn prepare() -> Option<Self> {
        let events = forecastbench()?;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let schema = runtime.block_on(TestSchema::create());
        let dir = tempfile::tempdir().unwrap();
        run(&mut backtest(
            &events,
            &dir.path().join("reference"),
            &dir.path().join("reference-out"),
        ))
        .ok();
        Some(Self {
            events,
            runtime,
            schema,
            dir,
        })
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A store on the day's schema.
    fn store(&self) -> Store {
        self.runtime
            .block_on(Store::connect(self.schema.url(), &StoreOptions::default()))
            .unwrap()
    }
}

/// The scheduler: `sooth backtest --workers` on the database at `url` (its output in
/// `scheduled-out`).
fn start_scheduler(events: &Path, dir: &Path, url: &str) -> Child {
    backtest(events, &dir.join("scheduler"), &dir.join("scheduled-out"))
        .arg("--database-url")
        .arg(url)
        .arg("--workers")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the scheduler to succeed, then checks that its leaderboard and pages are the
/// reference run's, byte for byte.
fn scheduled_as_the_reference(scheduler: &mut Child, dir: &Path) {
    let status = wait_with_deadline(scheduler, Duration::from_secs(600), "the backtest");
    let mut stderr = String::new();
    std::io::Read::read_to_string(scheduler.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the scheduler failed: {stderr}");
    for file in ["leaderboard.json", "leaderboard.csv", "site/index.html"] {
        assert_eq!(
            std::fs::read_to_string(dir.join("scheduled-out").join(file)).unwrap(),
            std::fs::read_to_string(dir.join("reference-out").join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn three_workers_one_killed_mid_run_give_the_single_process_results() {
    let Some(day) = Day::prepare() else {
        return;
    };
    let (events, runtime, url, dir) = (&day.events, &day.runtime, day.schema.url(), day.dir());

    // Workers may start before the scheduler: they wait for it.
    let names = ["w0", "w1", "w2"];
    let mut workers: Vec<Child> = names.iter().map(|id| start_worker(dir, url, id)).collect();
    let mut scheduler = start_scheduler(events, dir, url);

    // Kill a worker while it holds runs (the first seen to have recorded some): frozen first,
    // so that what it holds stays held while the test looks, then killed.
    let store = day.store();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (victim, held_at_kill) = 'kill: loop {
        assert!(Instant::now() < deadline, "no worker ever held runs");
        assert!(
            scheduler.try_wait().unwrap().is_none(),
            "the backtest ended before a worker could be killed"
        );
        let workers_now = runtime.block_on(store.workers()).unwrap_or_default();
        for (index, id) in names.iter().enumerate() {
            let ready = workers_now
                .iter()
                .any(|w| w.registration.worker_id == *id && w.completed >= 10);
            if ready {
                signal(&workers[index], "STOP");
                let held = worker(&runtime.block_on(store.workers()).unwrap(), id).leased;
                if held > 0 {
                    signal(&workers[index], "KILL");
                    break 'kill (index, held);
                }
                signal(&workers[index], "CONT");
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let survivors: Vec<usize> = (0..3).filter(|&index| index != victim).collect();
    // The same results as one process on SQLite, to the last bit.
    scheduled_as_the_reference(&mut scheduler, dir);
    let ids: Vec<String> = std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].to_string())
        .map(|id| id.trim_matches('"').to_owned())
        .collect();
    let reference = runtime
        .block_on(Store::open(&dir.join("reference/validator.sqlite")))
        .unwrap();
    let (mut runs, mut reference_runs) = (0, 0);
    for id in &ids {
        let scheduled = runtime.block_on(store.event_scores(id)).unwrap();
        let expected = runtime.block_on(reference.event_scores(id)).unwrap();
        assert_eq!(scheduled, expected, "scores of {id}");
        runs += runtime.block_on(store.runs_of_event(id)).unwrap().len();
        reference_runs += runtime.block_on(reference.runs_of_event(id)).unwrap().len();
    }
    assert_eq!(runs, reference_runs);
    assert_eq!(runs, 2 * ids.len());
    assert_eq!(
        runtime.block_on(store.latest_weights()).unwrap(),
        runtime.block_on(reference.latest_weights()).unwrap()
    );

    // Exactly once: the workers' records add up to the runs and benchmark forecasts stored.
    let recorded = runtime.block_on(store.workers()).unwrap();
    for w in &recorded {
        eprintln!(
            "{}: claimed {}, completed {}, expired {} ({} held {held_at_kill} when killed)",
            w.registration.worker_id, w.claimed, w.completed, w.expired, names[victim]
        );
    }
    let completed: u64 = recorded.iter().map(|w| w.completed).sum();
    assert_eq!(completed, 3 * ids.len() as u64, "{recorded:?}");
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
    workers[victim].wait().unwrap();
    for &index in &survivors {
        let child = &mut workers[index];
        signal(child, "TERM");
        let status = wait_with_deadline(child, Duration::from_secs(30), "a worker's drain");
        assert!(status.success(), "a worker exited with {status}");
    }
    let after = runtime.block_on(store.workers()).unwrap();
    for &index in &survivors {
        assert_eq!(worker(&after, names[index]).state, WorkerState::Stopped);
    }
    for id in survivors.iter().map(|&index| names[index]) {
        let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap();
        assert!(log.contains("runner worker stopped"), "{log}");
    }
    runtime.block_on(store.close());
    runtime.block_on(reference.close());
}

/// A TCP forwarder to the database that the test can cut (every connection dropped, new ones
/// refused) and restore: the database lost mid-day, as a worker sees it.
struct Outage {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Outage {
    fn start(runtime: &tokio::runtime::Runtime, target: String) -> Self {
        use tokio::net::{TcpListener, TcpStream};
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        runtime.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    continue; // dropped: refused while cut
                }
                let target = target.clone();
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|&cut| cut) => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// `url` with its host and port replaced by `127.0.0.1:port`, and the host and port it had.
fn through_port(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (credentials, host) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    (
        format!("{scheme}://{credentials}127.0.0.1:{port}{tail}"),
        host,
    )
}

#[test]
fn a_worker_that_loses_the_database_mid_day_pauses_and_resumes_recording_each_run_once() {
    let Some(day) = Day::prepare() else {
        return;
    };
    let (events, runtime, url, dir) = (&day.events, &day.runtime, day.schema.url(), day.dir());

    let (_, target) = through_port(url, 0);
    let outage = Outage::start(runtime, target);
    let (worker_url, _) = through_port(url, outage.port);
    let mut lone = start_worker(dir, &worker_url, "lone");
    let mut scheduler = start_scheduler(events, dir, url);
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
    scheduled_as_the_reference(&mut scheduler, dir);
    let lone_record = worker(&runtime.block_on(store.workers()).unwrap(), "lone").clone();
    let runs = 3 * std::fs::read_to_string(events).unwrap().lines().count() as u64;
    // Nothing recorded twice, nothing lost: every run and benchmark forecast once, by the one
    // worker, which went on after the outage.
    assert_eq!(lone_record.completed, runs, "{lone_record:?}");
    assert!(during < runs, "the outage came after the last run");
    // What it held through the outage was claimed again and run again.
    assert!(lone_record.claimed >= runs + held, "{lone_record:?}");
    signal(&lone, "TERM");
    let exit = wait_with_deadline(&mut lone, Duration::from_secs(30), "the worker's drain");
    assert!(exit.success());
    let log = std::fs::read_to_string(dir.join("lone.log")).unwrap();
    assert!(log.contains("the database may be unreachable"), "{log}");
    let dropped = format!(
        "{} dropped after their lease ended",
        lone_record.claimed - runs
    );
    assert!(log.contains(&dropped), "{dropped:?} in {log}");
    runtime.block_on(store.close());
}
