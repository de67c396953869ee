//! Compiling untrusted bytes, bounded in time and memory.
//!
//! Cranelift on hostile input is the one place where a miner's bytes meet
//! native code generation; a pathological component could take minutes or
//! gigabytes. With [`CompileIsolation::Subprocess`] compilation happens in a
//! child process whose address space and CPU time are capped and which is
//! killed at the deadline; [`CompileIsolation::InProcess`] bounds only the
//! wait and is meant for trusted bytes (tests, a miner's own agent).
//!
//! Whatever way the worker dies at its caps is the component's fault
//! ([`LoadError::CompileMemory`], [`LoadError::CompileTimeout`]); only a
//! worker that cannot be started or set up is the runner's
//! ([`LoadError::Engine`]).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::agent::LoadError;
use crate::engine::compile_engine;
use crate::truncate::{MAX_MESSAGE_BYTES, truncate};

/// Where components are compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompileIsolation {
    /// On a blocking thread of this process; only the wait is bounded.
    #[default]
    InProcess,
    /// In a child process running `program args... --memory-limit-bytes N`,
    /// which must call [`compile_worker_main`]; the component arrives on its
    /// stdin and the artifact leaves on its stdout.
    Subprocess {
        /// The executable, e.g. the `sooth` binary itself.
        program: PathBuf,
        /// Arguments before `--memory-limit-bytes`, e.g. its hidden
        /// compile-worker subcommand.
        #[serde(default)]
        args: Vec<String>,
    },
}

/// Threads the worker compiles functions on. Each thread compiles a function
/// of its own at once and brings its stack and a malloc arena (64 MiB of
/// address space with glibc), so the address space a compile needs grows
/// with the thread count: left to rayon's default (one per core) a cap
/// measured on 2 cores would refuse honest agents on a 32-core validator.
/// Two threads on the 2-core reference machine compile the Python agent
/// within a few percent of the time of one per core.
const COMPILE_THREADS: u32 = 2;

/// Marks the worker's own failures (it could not cap itself, read its input
/// or start the compiler): the runner's fault, not the component's.
const WORKER_FAULT: &str = "sooth compile worker fault:";

/// Texts with which a process at its address-space cap dies: Rust's
/// allocation-failure handler, `io::ErrorKind::OutOfMemory`, `ENOMEM`, and a
/// thread whose stack cannot be mapped (the compiler's thread pool).
const MEMORY_MARKERS: [&str; 5] = [
    "memory allocation of",
    "out of memory",
    "Cannot allocate memory",
    "failed to spawn thread",
    "ThreadPoolBuildError",
];

pub(crate) async fn compile(
    isolation: &CompileIsolation,
    bytes: Arc<[u8]>,
    timeout: Duration,
    memory_limit: u64,
) -> Result<Vec<u8>, LoadError> {
    match isolation {
        CompileIsolation::InProcess => {
            let task = tokio::task::spawn_blocking(move || {
                let engine = compile_engine().map_err(|e| LoadError::Engine(format!("{e:?}")))?;
                engine
                    .precompile_component(&bytes)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))
            });
            match tokio::time::timeout(timeout, task).await {
                Err(_) => Err(LoadError::CompileTimeout(timeout)),
                Ok(Err(join)) => Err(LoadError::Invalid(format!("the compiler crashed: {join}"))),
                Ok(Ok(result)) => result,
            }
        }
        CompileIsolation::Subprocess { program, args } => {
            compile_in_subprocess(program, args, &bytes, timeout, memory_limit).await
        }
    }
}

async fn compile_in_subprocess(
    program: &PathBuf,
    args: &[String],
    bytes: &[u8],
    timeout: Duration,
    memory_limit: u64,
) -> Result<Vec<u8>, LoadError> {
    let spawn_error = |e: std::io::Error| {
        LoadError::Engine(format!(
            "cannot start the compile worker {}: {e}",
            program.display()
        ))
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .arg("--memory-limit-bytes")
        .arg(memory_limit.to_string())
        // The worker runs the compiler on untrusted bytes: it gets nothing
        // of this process's environment, which may hold upstream API keys.
        .env_clear()
        // Read by the compiler's thread pool (rayon) and by glibc's malloc:
        // the worker's address space then does not depend on the core count.
        .env("RAYON_NUM_THREADS", COMPILE_THREADS.to_string())
        .env("MALLOC_ARENA_MAX", COMPILE_THREADS.to_string())
        // A backtrace at the cap allocates at the worst moment and tells the
        // runner nothing.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    // The worker compiles nothing before its stdin closes, so capping it
    // now, from outside, comes in time.
    cap_cpu_time(&child, timeout)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| LoadError::Engine("compile worker has no stdin".into()))?;
    let work = async {
        // Writing and reading together: the worker may fail before reading
        // everything, and a full pipe must not deadlock us.
        let feed = async {
            let written = stdin.write_all(bytes).await;
            drop(stdin);
            written
        };
        let (_, output) = tokio::join!(feed, child.wait_with_output());
        output
    };
    let output = match tokio::time::timeout(timeout, work).await {
        // Dropping `work` drops the child, which kills it.
        Err(_) => return Err(LoadError::CompileTimeout(timeout)),
        Ok(output) => output.map_err(spawn_error)?,
    };
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let refusal = refusal(output.status, &stderr, timeout, memory_limit);
    tracing::debug!(
        status = %output.status,
        stderr = %truncate(stderr.trim(), MAX_MESSAGE_BYTES),
        %refusal,
        "compile worker failed"
    );
    Err(refusal)
}

/// Cap the worker's CPU time at what its threads could spend before the
/// deadline. The deadline kills it first; this one holds when the runner is
/// gone (crashed, killed) and nobody is left to enforce the deadline.
#[cfg(target_os = "linux")]
fn cap_cpu_time(child: &tokio::process::Child, timeout: Duration) -> Result<(), LoadError> {
    // `id()` is `None` only once the child has been reaped, and this runs
    // before anything waits on it.
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return Ok(());
    };
    let seconds = timeout
        .as_secs()
        .saturating_add(1)
        .saturating_mul(u64::from(COMPILE_THREADS) + 1);
    // The soft limit sends SIGXCPU, the hard one SIGKILL a little later.
    match rlimit::prlimit(
        pid,
        rlimit::Resource::CPU,
        Some((seconds, seconds.saturating_add(5))),
        None,
    ) {
        Ok(()) => Ok(()),
        // Already gone: its exit status tells why.
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(error) => Err(LoadError::Engine(format!(
            "cannot limit the compile worker's CPU time: {error}"
        ))),
    }
}

#[cfg(not(target_os = "linux"))]
fn cap_cpu_time(_child: &tokio::process::Child, _timeout: Duration) -> Result<(), LoadError> {
    // No prlimit(2) here: the deadline is the only bound on time.
    Ok(())
}

/// What a failed worker's exit says about the component.
fn refusal(status: ExitStatus, stderr: &str, timeout: Duration, memory_limit: u64) -> LoadError {
    use std::os::unix::process::ExitStatusExt;

    let message = truncate(stderr.trim(), MAX_MESSAGE_BYTES);
    if let Some(fault) = message.strip_prefix(WORKER_FAULT) {
        return LoadError::Engine(format!("the compile worker failed: {}", fault.trim()));
    }
    if status.signal() == Some(libc::SIGXCPU) {
        return LoadError::CompileTimeout(timeout);
    }
    if MEMORY_MARKERS.iter().any(|marker| stderr.contains(marker)) {
        return LoadError::CompileMemory {
            limit_bytes: memory_limit,
        };
    }
    // Killed without a word (SIGKILL from the kernel's OOM killer, SIGSEGV
    // or SIGBUS on a stack or mapping that could not grow, SIGABRT): at a
    // memory cap this is the cap.
    if status.signal().is_some() {
        return LoadError::CompileMemory {
            limit_bytes: memory_limit,
        };
    }
    LoadError::Invalid(if message.is_empty() {
        format!("the compile worker failed ({status})")
    } else {
        message.to_owned()
    })
}

/// The body of a compile worker process: caps its own address space at
/// `memory_limit_bytes`, reads a component from stdin, writes the
/// precompiled artifact to stdout.
///
/// # Errors
///
/// A message for stderr when the limit cannot be set, the input cannot be
/// read, or the component does not compile. The runner reads it: a message
/// naming a fault of the worker itself makes the load a runner failure,
/// anything else is the component's fault.
pub fn compile_worker_main(memory_limit_bytes: u64) -> Result<(), String> {
    let fault =
        |what: &str, error: &dyn std::fmt::Display| format!("{WORKER_FAULT} {what}: {error}");
    rlimit::setrlimit(rlimit::Resource::AS, memory_limit_bytes, memory_limit_bytes)
        .map_err(|e| fault("cannot limit its memory", &e))?;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
        if e.kind() == std::io::ErrorKind::OutOfMemory {
            // The component alone does not fit under the cap.
            format!("out of memory reading the component: {e}")
        } else {
            fault("cannot read the component", &e)
        }
    })?;
    let engine =
        compile_engine().map_err(|e| fault("cannot create the compiler", &format!("{e:?}")))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&artifact)
        .and_then(|()| stdout.flush())
        .map_err(|e| fault("cannot write the artifact", &e))
}
