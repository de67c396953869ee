//! The WIT contract between sooth forecasting agents and the host that runs
//! them (`sooth.wit` beside this crate).
//!
//! This crate owns the contract's text and the names derived from it; it must
//! not hold any host or guest logic, only the command line that builds a
//! Python component against it. The host (`sooth-runner`) and the Rust
//! guest SDK (`sooth-sdk`) generate their bindings from the same file, and the
//! CLI writes this text into new Python agent projects.

/// The full text of `sooth.wit`.
pub const WIT_SOURCE: &str = include_str!("../sooth.wit");

/// The WIT package name and version agents are built against.
pub const PACKAGE: &str = "sooth:agent@0.1.0";

/// The world every agent targets.
pub const WORLD: &str = "forecaster";

/// File name under which the contract is written into agent projects.
pub const FILE_NAME: &str = "sooth.wit";

/// Fully qualified names of the interfaces an agent may import from this
/// package; anything else outside WASI is refused before it runs.
pub const IMPORTABLE_INTERFACES: [&str; 3] = [
    "sooth:agent/types@0.1.0",
    "sooth:agent/gateway@0.1.0",
    "sooth:agent/log@0.1.0",
];

/// Fully qualified name of the interface an agent must export.
pub const AGENT_INTERFACE: &str = "sooth:agent/agent@0.1.0";

/// The componentize-py command line that builds the Python agent in
/// `agent_dir` (its module `app`) against the contract in `wit` into
/// `output`, with each of `module_dirs` (the SDK helper's, say) on the
/// module path. The caller adds what its setting needs (environment,
/// standard streams) and runs it.
pub fn componentize_py_command(
    agent_dir: &std::path::Path,
    wit: &std::path::Path,
    module_dirs: &[&std::path::Path],
    output: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new("componentize-py");
    command.current_dir(agent_dir).arg("-d").arg(wit).args([
        "-w",
        WORLD,
        "componentize",
        "app",
        "-p",
        ".",
    ]);
    for dir in module_dirs {
        command.arg("-p").arg(dir);
    }
    command.arg("-o").arg(output);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_agree_with_the_wit_text() {
        assert!(WIT_SOURCE.contains("package sooth:agent@0.1.0;"));
        assert!(WIT_SOURCE.contains(&format!("world {WORLD} {{")));
        for interface in IMPORTABLE_INTERFACES.iter().chain([&AGENT_INTERFACE]) {
            let name = interface
                .trim_start_matches("sooth:agent/")
                .trim_end_matches("@0.1.0");
            assert!(
                WIT_SOURCE.contains(&format!("interface {name} {{")),
                "{name} is not in the WIT text"
            );
        }
    }
}
