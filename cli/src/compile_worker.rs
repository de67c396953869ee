//! `sooth internal compile-worker`: the child process in which the runner
//! compiles untrusted components (see `sooth_runner::CompileIsolation`).

use std::process::ExitCode;

/// Compile the component on stdin under a memory cap; the message of any
/// failure goes to stderr, where the runner reads it.
pub fn run(memory_limit_bytes: u64) -> ExitCode {
    match sooth_runner::compile_worker_main(memory_limit_bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
