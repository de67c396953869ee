//! A day of the ForecastBench file scheduled by `sooth backtest --workers` on a PostgreSQL
//! schema of its own and run by `sooth runner` processes, checked against the same backtest
//! in one process on SQLite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sooth_test_postgres::TestSchema;
use sooth_validator::store::{Store, StoreOptions, WorkerRecord};

use super::{forecastbench, run, sooth};

/// The day's file, its agents, a runtime, a schema on the test server and a directory.
pub struct Day {
    pub events: PathBuf,
    pub runtime: tokio::runtime::Runtime,
    pub schema: TestSchema,
    dir: tempfile::TempDir,
    agents: Vec<PathBuf>,
    benchmark: PathBuf,
}

impl Day {
    /// `None` without the ForecastBench file.
    pub fn new(agents: Vec<PathBuf>, benchmark: PathBuf) -> Option<Self> {
        let events = forecastbench()?;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let schema = runtime.block_on(TestSchema::create());
        Some(Self {
            events,
            runtime,
            schema,
            dir: tempfile::tempdir().unwrap(),
            agents,
            benchmark,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> &str {
        self.schema.url()
    }

    /// `sooth backtest` of the day with its agents and benchmark, written to `out`.
    pub fn backtest(&self, data_dir: &Path, out: &Path) -> Command {
        let mut command = sooth();
        command
            .arg("backtest")
            .arg("--events")
            .arg(&self.events)
            .arg("--agents")
            .args(&self.agents)
            .arg("--benchmark")
            .arg(&self.benchmark)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--out")
            .arg(out);
        command
    }

    /// The single-process SQLite backtest, `more` added to its command; its output in
    /// `reference-out`.
    pub fn run_reference(&self, more: impl FnOnce(&mut Command)) {
        let mut command = self.backtest(
            &self.dir().join("reference"),
            &self.dir().join("reference-out"),
        );
        more(&mut command);
        run(&mut command).ok();
    }

    /// A store on the day's schema.
    pub fn store(&self) -> Store {
        self.runtime
            .block_on(Store::connect(self.url(), &StoreOptions::default()))
            .unwrap()
    }

    /// The scheduler: `sooth backtest --workers` on the day's schema (its output in
    /// `scheduled-out`).
    pub fn start_scheduler(&self) -> Child {
        self.backtest(
            &self.dir().join("scheduler"),
            &self.dir().join("scheduled-out"),
        )
        .arg("--database-url")
        .arg(self.url())
        .arg("--workers")
        .stdout(Stdio::null())
        // A file, not a pipe: a pipe that nobody reads until the end would stop the scheduler
        // once it had logged a pipe's worth.
        .stderr(std::fs::File::create(self.dir().join("scheduler.log")).unwrap())
        .spawn()
        .unwrap()
    }

    /// A runner worker `id` on the database at `url`, with `more` lines of configuration, run
    /// by `launcher` (a command that runs its arguments somewhere else) or directly; its
    /// output in `ID.log`.
    pub fn start_worker(&self, url: &str, id: &str, more: &str, launcher: &[String]) -> Child {
        let dir = self.dir();
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "database_url = \"{url}\"\nworker_id = \"{id}\"\ncache_dir = \"{id}-cache\"\n\
                 concurrency = 2\nlease_secs = 3\n{more}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("{id}.log"))).unwrap();
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_sooth"));
                command
            }
            None => sooth(),
        };
        command
            .arg("runner")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// What worker `id` printed.
    pub fn worker_log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{id}.log"))).unwrap()
    }

    /// Waits for the scheduler to succeed, then checks that `files` of its output are the
    /// reference run's, byte for byte.
    pub fn scheduled_as_the_reference(&self, scheduler: &mut Child, files: &[&str]) {
        let Some(status) = wait_until(scheduler, Duration::from_secs(600)) else {
            let _ = scheduler.kill();
            let store = self.store();
            let queue = self.runtime.block_on(store.queue_counts());
            let workers = self.runtime.block_on(store.workers());
            let log = std::fs::read_to_string(self.dir().join("scheduler.log"));
            panic!(
                "the backtest did not end in 600 s: queue {queue:?}, workers {workers:?}, log {log:?}"
            );
        };
        let stderr = std::fs::read_to_string(self.dir().join("scheduler.log")).unwrap();
        assert!(status.success(), "the scheduler failed: {stderr}");
        for file in files {
            assert_eq!(
                std::fs::read_to_string(self.dir().join("scheduled-out").join(file)).unwrap(),
                std::fs::read_to_string(self.dir().join("reference-out").join(file)).unwrap(),
                "{file}"
            );
        }
    }

    /// The day's event ids.
    pub fn event_ids(&self) -> Vec<String> {
        std::fs::read_to_string(&self.events)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].to_string())
            .map(|id| id.trim_matches('"').to_owned())
            .collect()
    }

    /// Checks that every event's scores, the number of runs and the weights in `store` are
    /// the reference run's.
    pub fn same_scores_runs_and_weights(&self, store: &Store) {
        let runtime = &self.runtime;
        let reference = runtime
            .block_on(Store::open(&self.dir().join("reference/validator.sqlite")))
            .unwrap();
        let ids = self.event_ids();
        let (mut runs, mut reference_runs) = (0, 0);
        for id in &ids {
            let scheduled = runtime.block_on(store.event_scores(id)).unwrap();
            let expected = runtime.block_on(reference.event_scores(id)).unwrap();
            assert_eq!(scheduled, expected, "scores of {id}");
            runs += runtime.block_on(store.runs_of_event(id)).unwrap().len();
            reference_runs += runtime.block_on(reference.runs_of_event(id)).unwrap().len();
        }
        assert_eq!(runs, reference_runs);
        assert_eq!(runs, self.agents.len() * ids.len());
        assert_eq!(
            runtime.block_on(store.latest_weights()).unwrap(),
            runtime.block_on(reference.latest_weights()).unwrap()
        );
        runtime.block_on(reference.close());
    }

    /// Runs and benchmark forecasts in the day: what the workers must complete, once each.
    pub fn runs_owed(&self) -> u64 {
        ((self.agents.len() + 1) * self.event_ids().len()) as u64
    }

    /// Freezes a worker of `workers` (named `names`) that is seen holding runs after it
    /// completed `after` and kills it with SIGKILL; its index and the runs it held.
    pub fn kill_a_worker_holding_runs(
        &self,
        store: &Store,
        scheduler: &mut Child,
        workers: &[Child],
        names: &[&str],
        after: u64,
    ) -> (usize, u64) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            assert!(Instant::now() < deadline, "no worker ever held runs");
            assert!(
                scheduler.try_wait().unwrap().is_none(),
                "the backtest ended before a worker could be killed"
            );
            let workers_now = self.runtime.block_on(store.workers()).unwrap_or_default();
            for (index, id) in names.iter().enumerate() {
                let ready = workers_now
                    .iter()
                    .any(|w| w.registration.worker_id == *id && w.completed >= after);
                if ready {
                    // Frozen first, so that what it holds stays held while the test looks;
                    // a statement it sent before it froze still ends at the server, so the
                    // test looks once those have.
                    signal(&workers[index], "STOP");
                    std::thread::sleep(Duration::from_millis(300));
                    let held = worker(&self.runtime.block_on(store.workers()).unwrap(), id).leased;
                    if held > 0 {
                        signal(&workers[index], "KILL");
                        return (index, held);
                    }
                    signal(&workers[index], "CONT");
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Day {
    /// A test that fails leaves none of its processes behind (its workers and its scheduler).
    fn drop(&mut self) {
        kill_processes_naming(self.dir());
    }
}

/// Kills, when dropped, every process whose command line names its directory: a test that
/// fails leaves none of the processes it started there behind.
pub struct ProcessesOf(pub PathBuf);

impl Drop for ProcessesOf {
    fn drop(&mut self) {
        kill_processes_naming(&self.0);
    }
}

/// Kills every process whose command line names `dir`.
fn kill_processes_naming(dir: &Path) {
    let dir = dir.display().to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return;
    };
    for process in processes.flatten() {
        let name = process.file_name();
        let Some(pid) = name.to_str().filter(|pid| pid.parse::<u32>().is_ok()) else {
            continue;
        };
        let named = std::fs::read(process.path().join("cmdline"))
            .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&dir));
        if named {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// How `child` ended, if it did within `limit`.
pub fn wait_until(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_with_deadline(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    wait_until(child, limit).unwrap_or_else(|| panic!("{what} did not end in {limit:?}"))
}

pub fn worker<'a>(workers: &'a [WorkerRecord], id: &str) -> &'a WorkerRecord {
    workers
        .iter()
        .find(|worker| worker.registration.worker_id == id)
        .unwrap_or_else(|| panic!("{id} is not registered: {workers:?}"))
}

/// Reaps the killed worker `victim` of `workers` (named `names`), then drains the others (see
/// [`drain`]).
pub fn drain_survivors(
    day: &Day,
    store: &Store,
    mut workers: Vec<Child>,
    names: &[&str],
    victim: usize,
) {
    workers.remove(victim).wait().unwrap();
    let mut survivors: Vec<(&str, Child)> = names
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != victim)
        .map(|(_, id)| *id)
        .zip(workers)
        .collect();
    drain(day, store, &mut survivors);
}

/// Sends SIGTERM to each of `workers` and checks that it drains, exits cleanly and is
/// recorded as stopped.
pub fn drain(day: &Day, store: &Store, workers: &mut [(&str, Child)]) {
    for (_, child) in workers.iter_mut() {
        signal(child, "TERM");
    }
    for (id, child) in workers.iter_mut() {
        let status = wait_with_deadline(child, Duration::from_secs(30), "a worker's drain");
        assert!(status.success(), "{id} exited with {status}");
        let log = day.worker_log(id);
        assert!(log.contains("runner worker stopped"), "{log}");
    }
    let after = day.runtime.block_on(store.workers()).unwrap();
    for (id, _) in workers.iter() {
        assert_eq!(
            worker(&after, id).state,
            sooth_validator::store::WorkerState::Stopped
        );
    }
}

/// libfaketime, which makes a process read a wall clock of its own.
pub const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A launcher that runs its command on a wall clock `offset` off (`+1h`, `-1h`); the monotonic
/// clock is left alone, as on a host whose clock is merely set wrong.
pub fn skewed(offset: &str) -> Vec<String> {
    [
        "env",
        &format!("FAKETIME={offset}"),
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        &format!("LD_PRELOAD={FAKETIME}"),
        "RUST_LOG=info",
    ]
    .map(str::to_owned)
    .to_vec()
}
