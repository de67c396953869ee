//! Compiling untrusted bytes, bounded in time and memory.
//!
//! Cranelift on hostile input is the one place where a miner's bytes meet
//! native code generation; a pathological component could take minutes or
//! gigabytes. With [`CompileIsolation::Subprocess`] compilation happens in a
//! child process whose address space is capped and which is killed at the
//! deadline; [`CompileIsolation::InProcess`] bounds only the wait and is meant
//! for trusted bytes (tests, a miner's own agent).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::agent::LoadError;
use crate::engine::compile_engine;

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

/// What the worker prints when the allocator gives up; Rust's default
/// out-of-memory handler says "memory allocation of N bytes failed".
const OOM_MARKER: &str = "memory allocation of";

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
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
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
        Err(_) => return Err(LoadError::CompileTimeout(timeout)),
        Ok(output) => output.map_err(spawn_error)?,
    };
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains(OOM_MARKER) {
        return Err(LoadError::CompileMemory {
            limit_bytes: memory_limit,
        });
    }
    let message = stderr.trim();
    Err(LoadError::Invalid(if message.is_empty() {
        format!("the compile worker failed ({})", output.status)
    } else {
        message.to_owned()
    }))
}

/// The body of a compile worker process: caps its own address space at
/// `memory_limit_bytes`, reads a component from stdin, writes the
/// precompiled artifact to stdout.
///
/// # Errors
///
/// A message for stderr when the limit cannot be set, the input cannot be
/// read, or the component does not compile.
pub fn compile_worker_main(memory_limit_bytes: u64) -> Result<(), String> {
    rlimit::setrlimit(rlimit::Resource::AS, memory_limit_bytes, memory_limit_bytes)
        .map_err(|e| format!("cannot limit the compile worker's memory: {e}"))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the component: {e}"))?;
    let engine = compile_engine().map_err(|e| format!("cannot create the compiler: {e:?}"))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&artifact)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write the artifact: {e}"))
}
