//! The runner every command that runs agents uses: the validator's sandbox settings, compiling
//! in a memory-capped child process of this binary, with a compile cache when one can be used.

use std::path::PathBuf;

use anyhow::Context;
use sooth_runner::{CompileIsolation, Runner, RunnerConfig, RunnerError};

/// `$XDG_CACHE_HOME/sooth/compiled`, else `~/.cache/sooth/compiled`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let nonempty = |name| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    nonempty("XDG_CACHE_HOME")
        .filter(|dir| dir.is_absolute())
        .or_else(|| nonempty("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("sooth").join("compiled"))
}

/// The validator's runner, compiling in a memory-capped child process of
/// this binary; without a cache when the cache cannot be used.
pub fn make_runner(cache_dir: Option<PathBuf>) -> anyhow::Result<Runner> {
    make_runner_with(RunnerConfig::default(), cache_dir)
}

/// As [`make_runner`], with the other settings of `config`.
pub fn make_runner_with(
    config: RunnerConfig,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<Runner> {
    let program = std::env::current_exe()
        .context("cannot find the sooth executable for the compile worker")?;
    let mut config = RunnerConfig {
        compile_isolation: CompileIsolation::Subprocess {
            program,
            args: vec!["internal".into(), "compile-worker".into()],
        },
        ..config
    };
    config.cache_dir = cache_dir.filter(|dir| match std::fs::create_dir_all(dir) {
        Ok(()) => true,
        Err(error) => {
            eprintln!(
                "warning: cannot use the compile cache {}: {error}; compiling without a cache",
                dir.display()
            );
            false
        }
    });
    tracing::debug!(?config, "starting the runner");
    match Runner::new(config.clone()) {
        Err(RunnerError::Cache { path, source }) => {
            eprintln!(
                "warning: cannot use the compile cache {path}: {source}; compiling without a cache"
            );
            config.cache_dir = None;
            Ok(Runner::new(config)?)
        }
        other => Ok(other?),
    }
}
