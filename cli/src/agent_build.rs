//! `sooth agent build`: turn an agent project into a WebAssembly component.
//!
//! A directory with `Cargo.toml` is built by cargo for `wasm32-wasip2`; one
//! with `app.py` by componentize-py, with the SDK helper and the WIT contract
//! found beside the agent, in an enclosing sooth checkout, or written from
//! the copies embedded in this binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::agent_new::PYTHON_SDK;
use crate::{BuildArgs, outln};

/// What to install when componentize-py is missing.
const INSTALL_COMPONENTIZE_PY: &str = "componentize-py is not on PATH; install it with `pip install componentize-py` (0.25.1 is known to work)";

/// Build the project in `args.dir` and report the component.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let out = args.out.clone().unwrap_or_else(|| dir.join("agent.wasm"));
    let out_abs = std::path::absolute(&out)
        .with_context(|| format!("invalid output path {}", out.display()))?;
    if dir.join("Cargo.toml").is_file() {
        build_rust(dir, &out_abs)?;
    } else if dir.join("app.py").is_file() {
        build_python(dir, &out_abs)?;
    } else {
        bail!(
            "{} has neither Cargo.toml (a Rust agent) nor app.py (a Python agent)",
            dir.display()
        );
    }
    let bytes = std::fs::read(&out_abs)
        .with_context(|| format!("cannot read the built component {}", out.display()))?;
    outln(format_args!("built {}", out.display()))?;
    outln(format_args!(
        "  size    {} bytes ({:.1} MiB)",
        bytes.len(),
        bytes.len() as f64 / f64::from(1u32 << 20)
    ))?;
    outln(format_args!(
        "  sha256  {}",
        sooth_runner::content_hash(&bytes)
    ))?;
    Ok(())
}

/// The target agents are built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Whether the toolchain that builds in `dir` has the standard library for `target`: rustc
/// names the directory it would link it from, which holds `libstd` only once the target is
/// installed. `None` when rustc cannot be asked (cargo will then say what is wrong).
fn has_target_std(dir: &Path, target: &str) -> Option<bool> {
    let output = Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", target])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let has_std = std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    });
    Some(has_std)
}

/// Makes sure the toolchain that builds in `dir` can build for [`WASM_TARGET`]: a toolchain
/// installed before the project asked for the target lacks it, and cargo would stop with
/// "can't find crate for `std`". With rustup the target is added (saying so); without, the
/// error names the command to run.
fn ensure_wasm_target(dir: &Path) -> anyhow::Result<()> {
    if has_target_std(dir, WASM_TARGET) != Some(false) {
        return Ok(());
    }
    let add = ["target", "add", WASM_TARGET];
    eprintln!(
        "the Rust toolchain lacks the {WASM_TARGET} target; adding it with `rustup target add {WASM_TARGET}`"
    );
    let status = match Command::new("rustup")
        .current_dir(dir)
        .args(add)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
    {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "the Rust toolchain lacks the {WASM_TARGET} target and rustup is not on PATH; install the target (with rustup: `rustup target add {WASM_TARGET}`) and build again"
        ),
        Err(error) => return Err(error).context("cannot run rustup"),
        Ok(status) => status,
    };
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed ({status}); its messages are above");
    }
    Ok(())
}

/// Builds the Rust agent project in `dir` with cargo for `wasm32-wasip2` (release) and copies
/// the component to `out`.
pub fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    ensure_wasm_target(dir)?;
    eprintln!(
        "building {} with cargo for wasm32-wasip2 (release)",
        dir.display()
    );
    let output = Command::new("cargo")
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo (install Rust with rustup, https://rustup.rs)")?;
    if !output.status.success() {
        bail!(
            "cargo build failed ({}); its messages are above",
            output.status
        );
    }
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml")).ok();
    let artifact = find_cdylib(
        &String::from_utf8_lossy(&output.stdout),
        manifest.as_deref(),
    )?;
    tracing::info!(artifact = %artifact.display(), "cargo built");
    std::fs::copy(&artifact, out)
        .with_context(|| format!("cannot copy {} to {}", artifact.display(), out.display()))?;
    Ok(())
}

/// The `.wasm` file of the cdylib cargo reported building, preferring the
/// package of `manifest` when cargo built several.
fn find_cdylib(messages: &str, manifest: Option<&Path>) -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["crate_types"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t == "cdylib"));
        if !is_cdylib {
            continue;
        }
        let from_manifest = message["manifest_path"].as_str().map(PathBuf::from);
        let files = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for file in files.filter(|file| file.ends_with(".wasm")) {
            candidates.push((PathBuf::from(file), from_manifest.clone()));
        }
    }
    let ours: Vec<&PathBuf> = candidates
        .iter()
        .filter(|(_, from)| manifest.is_some() && from.as_deref() == manifest)
        .map(|(file, _)| file)
        .collect();
    match (ours.as_slice(), candidates.as_slice()) {
        ([one], _) => Ok((*one).clone()),
        ([], [(one, _)]) => Ok(one.clone()),
        (_, []) => bail!(
            "cargo built no .wasm library; set `crate-type = [\"cdylib\"]` under [lib] in Cargo.toml"
        ),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .map(|(file, _)| file.display().to_string())
                .collect();
            bail!(
                "cargo built several .wasm libraries, build one package at a time: {}",
                names.join(", ")
            )
        }
    }
}

/// Where the Python build finds what it needs beside the agent's own code.
struct PythonInputs {
    wit: PathBuf,
    /// A directory to add to the module path for `sooth_sdk`, when the
    /// agent's directory has none.
    sdk_dir: Option<PathBuf>,
    /// Holds embedded copies and the empty virtual environment.
    _scratch: tempfile::TempDir,
    empty_venv: PathBuf,
}

fn find_upwards(start: &Path, relative: &str) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(relative))
        .find(|path| path.is_file())
}

fn python_inputs(dir: &Path) -> anyhow::Result<PythonInputs> {
    let scratch = tempfile::Builder::new()
        .prefix("sooth-build-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let start =
        std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let wit = match Some(start.join(sooth_wit::FILE_NAME))
        .filter(|path| path.is_file())
        .or_else(|| find_upwards(&start, "wit/sooth.wit"))
    {
        Some(path) => {
            if std::fs::read_to_string(&path).is_ok_and(|text| text != sooth_wit::WIT_SOURCE) {
                eprintln!(
                    "warning: {} differs from the contract this sooth was built with ({}); the validator may refuse the component",
                    path.display(),
                    sooth_wit::PACKAGE
                );
            }
            path
        }
        None => {
            let path = scratch.path().join(sooth_wit::FILE_NAME);
            std::fs::write(&path, sooth_wit::WIT_SOURCE)
                .context("cannot write the WIT contract")?;
            path
        }
    };
    let sdk_dir = if start.join("sooth_sdk.py").is_file() {
        None
    } else if let Some(path) = find_upwards(&start, "sdk/python/sooth_sdk.py") {
        path.parent().map(Path::to_path_buf)
    } else {
        let sdk = scratch.path().join("sdk");
        std::fs::create_dir(&sdk).context("cannot create a temporary directory")?;
        std::fs::write(sdk.join("sooth_sdk.py"), PYTHON_SDK)
            .context("cannot write the SDK helper")?;
        Some(sdk)
    };
    // componentize-py bundles `$VIRTUAL_ENV/lib/python*/site-packages`
    // (and warns when there is none).
    let empty_venv = scratch.path().join("empty-venv");
    std::fs::create_dir_all(empty_venv.join("lib").join("python3").join("site-packages"))
        .context("cannot create a temporary directory")?;
    Ok(PythonInputs {
        wit,
        sdk_dir,
        _scratch: scratch,
        empty_venv,
    })
}

/// Builds the Python agent project in `dir` (its module `app`) with componentize-py into `out`.
pub fn build_python(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let inputs = python_inputs(dir)?;
    eprintln!(
        "building {} with componentize-py (WIT {})",
        dir.display(),
        inputs.wit.display()
    );
    let module_dirs: Vec<&Path> = inputs.sdk_dir.iter().map(PathBuf::as_path).collect();
    let mut command = sooth_wit::componentize_py_command(dir, &inputs.wit, &module_dirs, out);
    command
        // An empty virtual environment: host site-packages are not bundled.
        .env("VIRTUAL_ENV", &inputs.empty_venv)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()));
    tracing::debug!(?command, "running componentize-py");
    let status = match command.status() {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("{INSTALL_COMPONENTIZE_PY}")
        }
        Err(error) => return Err(error).context("cannot run componentize-py"),
        Ok(status) => status,
    };
    // 127: a shell or pyenv shim that found no such command.
    if status.code() == Some(127) {
        bail!("{INSTALL_COMPONENTIZE_PY} (it exited with status 127)");
    }
    if !status.success() {
        bail!("componentize-py failed ({status}); its messages are above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn finds_the_cdylib_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","manifest_path":"/w/sdk/Cargo.toml","target":{"crate_types":["lib"]},"filenames":["/t/libsooth_sdk.rlib"]}
not json
{"reason":"compiler-artifact","manifest_path":"/w/Cargo.toml","target":{"crate_types":["cdylib"]},"filenames":["/t/wasm32-wasip2/release/my_agent.wasm"]}
{"reason":"build-finished","success":true}"#;
        let found = find_cdylib(messages, Some(Path::new("/w/Cargo.toml"))).unwrap();
        assert_eq!(
            found,
            PathBuf::from("/t/wasm32-wasip2/release/my_agent.wasm")
        );
        assert_eq!(find_cdylib(messages, None).unwrap(), found);
        let error = find_cdylib("{\"reason\":\"build-finished\"}", None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cdylib"), "{error}");
    }
}
