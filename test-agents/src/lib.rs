//! Builds agents to WebAssembly components for the test suites and the
//! benchmarks: the Rust example agents, the hostile test agent, and the
//! Python example agent (through componentize-py); and generates the crafted
//! components that make a compiler spend ([`crafted`]).
//!
//! This crate owns only building; it must not hold test logic. Builds go to
//! `target/test-agents` (a separate target directory, so that a build from
//! inside `cargo test` never waits on the outer cargo's lock) and are
//! incremental: cargo and a content hash decide what is rebuilt.

pub mod crafted;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir() -> PathBuf {
    workspace_root().join("target").join("test-agents")
}

/// Serializes builds within one process; cargo's own lock serializes them
/// across processes.
static BUILDING: Mutex<()> = Mutex::new(());

/// Build a Rust agent package of the workspace for `wasm32-wasip2` with the
/// `agent` profile and return the component's path.
///
/// # Panics
///
/// When cargo cannot be run or the build fails: the tests cannot go on
/// without their agents, and the panic says why.
pub fn rust_agent(package: &str) -> PathBuf {
    rust_agent_with(package, &[])
}

/// As [`rust_agent`], with cargo `features` on; the component is copied to a path of its own
/// (`PACKAGE+FEATURES.wasm`), since builds with other features overwrite cargo's output.
///
/// # Panics
///
/// As [`rust_agent`].
pub fn rust_agent_with(package: &str, features: &[&str]) -> PathBuf {
    let _guard = BUILDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "--target",
        "wasm32-wasip2",
        "--profile",
        "agent",
        "-p",
        package,
    ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let status = command
        .arg("--target-dir")
        .arg(target_dir())
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build {package}: {error}"));
    assert!(
        status.success(),
        "building agent {package} failed ({status})"
    );
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("agent")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(
        path.exists(),
        "cargo built {package} but {} is missing",
        path.display()
    );
    if features.is_empty() {
        return path;
    }
    let copy = target_dir().join(format!("{package}+{}.wasm", features.join("+")));
    std::fs::copy(&path, &copy).unwrap_or_else(|error| {
        panic!(
            "cannot copy {} to {}: {error}",
            path.display(),
            copy.display()
        )
    });
    copy
}

/// The test agent with a private signal beside the market price, in the variant `features`
/// name: none (the original), `independent` (another honest agent), `noise-1`, `noise-3` or
/// `noise-5` (copies of the original with Gaussian noise of sigma 0.01, 0.03 or 0.05).
pub fn signal_agent(features: &[&str]) -> PathBuf {
    rust_agent_with("signal-agent", features)
}

/// The market-price baseline example agent.
pub fn market_baseline() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| rust_agent("market-baseline")).clone()
}

/// The Rust LLM forecaster example agent.
pub fn llm_forecaster() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| rust_agent("llm-forecaster")).clone()
}

/// The hostile test agent (misbehaves as its event's title says).
pub fn hostile() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| rust_agent("hostile-agent")).clone()
}

/// The test agent that always forecasts 0.5.
pub fn always_half() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| rust_agent("always-half")).clone()
}

fn hash_sources(paths: &[PathBuf]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(path).unwrap_or_default());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The Python LLM forecaster example agent, built with componentize-py
/// (rebuilt only when its sources, the SDK helper or the WIT change).
///
/// # Panics
///
/// When componentize-py is missing (`pip install componentize-py`) or the
/// build fails.
pub fn python_llm_forecaster() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = workspace_root();
        let agent_dir = root.join("agents-examples").join("llm-forecaster-py");
        let sdk = root.join("sdk").join("python");
        let wit = root.join("wit").join("sooth.wit");
        let sources = [agent_dir.join("app.py"), sdk.join("sooth_sdk.py"), wit.clone()];
        let output = target_dir().join("python").join(format!("llm-forecaster-py-{}.wasm", hash_sources(&sources)));
        if output.exists() {
            return output;
        }
        let _guard = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::create_dir_all(output.parent().unwrap_or(&root)).unwrap_or_else(|e| panic!("cannot create {}: {e}", output.display()));
        let partial = output.with_extension("partial.wasm");
        // An empty virtual environment keeps the host's site-packages out
        // of the component.
        let venv = target_dir().join("python").join("empty-venv");
        std::fs::create_dir_all(venv.join("lib").join("python3").join("site-packages"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", venv.display()));
        let status = sooth_wit::componentize_py_command(&agent_dir, &wit, &[&sdk], &partial)
            .env("VIRTUAL_ENV", &venv)
            .status()
            .unwrap_or_else(|error| panic!("cannot run componentize-py ({error}); install it with `pip install componentize-py`"));
        assert!(status.success(), "componentize-py failed to build the Python agent ({status})");
        std::fs::rename(&partial, &output).unwrap_or_else(|e| panic!("cannot move the Python agent into place: {e}"));
        output
    })
    .clone()
}
