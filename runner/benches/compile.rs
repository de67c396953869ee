//! Compile benchmark: what compiling the largest legitimate agents and the
//! crafted components that make the compiler spend (millions of nested
//! blocks, 200,000 functions) cost in the subprocess worker, the figures
//! behind the default compile caps in `RunnerConfig`.
//!
//! ```text
//! cargo bench -p sooth-runner --bench compile
//! cargo bench -p sooth-runner --bench compile -- --before   # also the old 8 GiB / 120 s caps
//! ```
//!
//! Every compile goes through `Runner::load` with `CompileIsolation::Subprocess`,
//! exactly as a validator compiles, except that the worker program is this
//! benchmark re-entered as a thin wrapper: it starts the real
//! `sooth-compile-worker` with the runner's arguments and environment, waits
//! for it, and records the worker's peak resident memory and CPU time. For
//! each legitimate agent it also finds, by bisection, the lowest
//! address-space cap (`compile_memory_limit_bytes`) under which it still
//! compiles: the cap is RLIMIT_AS, which counts reserved address space
//! (thread stacks, malloc arenas, the binary) besides what is resident.
//!
//! Figures on the 2-core reference machine (release build), in the comment of
//! the defaults in `runner/src/config.rs`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use sooth_runner::{CompileIsolation, LoadError, Runner, RunnerConfig};

use sooth_test_agents::crafted;

const MIB: u64 = 1 << 20;
/// Bisection stops when the bracket is this narrow.
const RESOLUTION: u64 = 8 * MIB;

/// What one compile cost.
struct Measured {
    result: Result<(), LoadError>,
    wall: Duration,
    cpu: Duration,
    max_rss_mib: f64,
}

fn worker() -> &'static str {
    env!("CARGO_BIN_EXE_sooth-compile-worker")
}

/// A runner whose worker is this benchmark wrapping the real one, which
/// writes what it measured to `report`.
fn runner(memory: u64, timeout: Duration, report: &Path) -> Runner {
    let exe = std::env::current_exe().expect("bench executable");
    Runner::new(RunnerConfig {
        compile_isolation: CompileIsolation::Subprocess {
            program: exe,
            args: vec!["--wrap-worker".into(), report.display().to_string()],
        },
        compile_memory_limit_bytes: memory,
        compile_timeout: timeout,
        max_concurrent_runs: 4,
        ..RunnerConfig::default()
    })
    .expect("runner")
}

/// Load `bytes` once in a fresh runner (no cache) under `memory` and `timeout`.
async fn measure(bytes: &[u8], memory: u64, timeout: Duration) -> Measured {
    let report =
        std::env::temp_dir().join(format!("sooth-bench-compile-{}.usage", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let runner = runner(memory, timeout, &report);
    let started = Instant::now();
    let result = runner.load(bytes).await.map(|_| ());
    let wall = started.elapsed();
    let (cpu, max_rss_mib) = std::fs::read_to_string(&report)
        .ok()
        .and_then(|text| {
            let mut fields = text.split_whitespace().map(str::parse::<f64>);
            Some((fields.next()?.ok()?, fields.next()?.ok()?))
        })
        .map_or((Duration::ZERO, f64::NAN), |(cpu, rss)| {
            (Duration::from_secs_f64(cpu), rss)
        });
    let _ = std::fs::remove_file(&report);
    Measured {
        result,
        wall,
        cpu,
        max_rss_mib,
    }
}

fn describe(m: &Measured) -> String {
    let outcome = match &m.result {
        Ok(()) => "compiled".to_owned(),
        Err(LoadError::MissingExport(_)) => "compiled (no agent in it)".to_owned(),
        Err(error) => format!("refused: {error}"),
    };
    format!(
        "{outcome}; wall {:.1} s, worker CPU {:.1} s, worker peak RSS {:.0} MiB",
        m.wall.as_secs_f64(),
        m.cpu.as_secs_f64(),
        m.max_rss_mib
    )
}

fn compiled(m: &Measured) -> bool {
    matches!(m.result, Ok(()) | Err(LoadError::MissingExport(_)))
}

/// The lowest cap, to [`RESOLUTION`], under which `bytes` compiles.
async fn lowest_cap(bytes: &[u8], timeout: Duration) -> u64 {
    let (mut low, mut high) = (64 * MIB, 4096 * MIB);
    assert!(
        compiled(&measure(bytes, high, timeout).await),
        "does not compile even under {} MiB",
        high / MIB
    );
    while high - low > RESOLUTION {
        let middle = (low + high) / 2 / MIB * MIB;
        if compiled(&measure(bytes, middle, timeout).await) {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
}

async fn legitimate(name: &str, path: &Path) {
    let bytes = std::fs::read(path).expect("agent");
    let defaults = RunnerConfig::default();
    println!("{name} ({:.1} MB)", bytes.len() as f64 / 1e6);
    for round in 1..=3 {
        let m = measure(
            &bytes,
            defaults.compile_memory_limit_bytes,
            defaults.compile_timeout,
        )
        .await;
        println!("  under the default caps, run {round}: {}", describe(&m));
    }
    let cap = lowest_cap(&bytes, Duration::from_secs(600)).await;
    println!(
        "  lowest address-space cap it compiles under: {} MiB (default cap {} MiB: {:.2}x)",
        cap / MIB,
        defaults.compile_memory_limit_bytes / MIB,
        defaults.compile_memory_limit_bytes as f64 / cap as f64
    );
}

async fn crafted_shape(name: &str, bytes: &[u8], before: bool) {
    let defaults = RunnerConfig::default();
    println!("{name} ({:.1} MB)", bytes.len() as f64 / 1e6);
    let m = measure(
        bytes,
        defaults.compile_memory_limit_bytes,
        defaults.compile_timeout,
    )
    .await;
    println!(
        "  under the default caps ({} MiB, {} s): {}",
        defaults.compile_memory_limit_bytes / MIB,
        defaults.compile_timeout.as_secs(),
        describe(&m)
    );
    if before {
        let m = measure(bytes, 8 << 30, Duration::from_secs(120)).await;
        println!("  under the old caps (8192 MiB, 120 s): {}", describe(&m));
    }
}

/// Wrapper mode: run the worker on our stdin and stdout with our arguments,
/// report its CPU time and peak RSS, and end as it ended.
fn wrap_worker(report: &str, args: &[String]) -> ! {
    let mut child = std::process::Command::new(worker())
        .args(args)
        .spawn()
        .expect("start the worker");
    let status = child.wait().expect("wait for the worker");
    let (cpu, max_rss_kib) = children_usage();
    if let Ok(mut file) = std::fs::File::create(report) {
        let _ = writeln!(
            file,
            "{} {}",
            cpu.as_secs_f64(),
            max_rss_kib as f64 / 1024.0
        );
    }
    end_as(status)
}

/// CPU time and peak RSS (KiB) of the waited-for children of this process.
#[allow(unsafe_code)]
fn children_usage() -> (Duration, i64) {
    // SAFETY: getrusage writes only into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (time(usage.ru_utime) + time(usage.ru_stime), usage.ru_maxrss)
}

/// Exit with `status`, dying of the same signal if the worker did, so that
/// the runner classifies the wrapper's end as it would the worker's.
#[allow(unsafe_code)]
fn end_as(status: std::process::ExitStatus) -> ! {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        // SAFETY: restoring the default action and raising the signal are
        // plain system calls; the process ends here either way.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
    std::process::exit(status.code().unwrap_or(1))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, report, rest @ ..] = args.as_slice()
        && flag == "--wrap-worker"
    {
        wrap_worker(report, rest);
    }
    let before = args.iter().any(|a| a == "--before");
    // Build the agents once, outside any measurement.
    let agents = [
        (
            "python example agent (llm-forecaster-py)",
            sooth_test_agents::python_llm_forecaster(),
        ),
        (
            "rust example agent (llm-forecaster)",
            sooth_test_agents::llm_forecaster(),
        ),
        (
            "rust example agent (market-baseline)",
            sooth_test_agents::market_baseline(),
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    println!(
        "sooth compile benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    runtime.block_on(async {
        for (name, path) in &agents {
            legitimate(name, path).await;
        }
        crafted_shape(
            "crafted: 2,400,000 nested blocks in one function",
            &crafted::nested_blocks(crafted::NESTED_BLOCKS_DEPTH),
            before,
        )
        .await;
        crafted_shape(
            "crafted: 200,000 functions",
            &crafted::many_functions(crafted::MANY_FUNCTIONS),
            before,
        )
        .await;
    });
}
