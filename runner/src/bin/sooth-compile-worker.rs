//! A stand-alone compile worker for `CompileIsolation::Subprocess`, for
//! embedders of the runner that have no binary of their own to re-enter
//! (the `sooth` CLI uses its hidden `internal compile-worker` instead).
//!
//! Usage: `sooth-compile-worker --memory-limit-bytes N < component.wasm > artifact`

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit = match args.as_slice() {
        [flag, value] if flag == "--memory-limit-bytes" => value.parse::<u64>().ok(),
        _ => None,
    };
    let Some(limit) = limit else {
        eprintln!("usage: sooth-compile-worker --memory-limit-bytes N < component.wasm > artifact");
        return ExitCode::from(2);
    };
    match sooth_runner::compile_worker_main(limit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
