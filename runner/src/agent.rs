//! A loaded agent: checked, compiled (or taken from the cache) and linked,
//! ready to be instantiated once per run.

use std::sync::Arc;
use std::time::Duration;

use crate::host::{ForecasterPre, HostState};

/// Why a component cannot become an agent. Each message says what was wrong
/// with the bytes.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LoadError {
    /// Over the configured size limit.
    #[error("component is {size} bytes, over the {limit} byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (it does not start with the \\0asm magic)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or with componentize-py"
    )]
    CoreModule,
    /// Malformed or unsupported WebAssembly.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// Compilation took too long.
    #[error("compilation did not finish within {0:?}")]
    CompileTimeout(Duration),
    /// Compilation needed too much memory.
    #[error("compilation needed more than {limit_bytes} bytes of memory")]
    CompileMemory {
        /// The limit.
        limit_bytes: u64,
    },
    /// The component imports something outside the contract.
    #[error(
        "component imports `{0}`, which is outside the sooth contract (allowed: sooth:agent gateway and log, WASI 0.2)"
    )]
    ForbiddenImport(String),
    /// The component does not export the contract's agent interface.
    #[error("component does not export the sooth agent interface correctly: {0}")]
    MissingExport(String),
    /// The imports could not be linked (e.g. a WASI version the host lacks).
    #[error("component cannot be linked: {0}")]
    Link(String),
    /// The component's shape asks for more than the sandbox gives a run: a
    /// memory whose minimum is over the cap, a second memory in a module,
    /// more instances or tables than allowed.
    #[error("component asks for more than the sandbox allows: {0}")]
    OverSandboxLimits(String),
    /// The engine or the compile worker failed, not the component.
    #[error("runner failure while loading: {0}")]
    Engine(String),
}

impl LoadError {
    /// Whether the component is to blame (its bytes, shape, imports,
    /// exports or cost to compile), as opposed to the runner: a validator
    /// rejects such a component, and retries a load that failed otherwise.
    #[must_use]
    pub fn is_component_fault(&self) -> bool {
        !matches!(self, Self::Engine(_))
    }
}

/// A component ready to run: cheap to clone, shared by concurrent runs.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<AgentInner>,
}

struct AgentInner {
    hash: String,
    size: usize,
    pre: ForecasterPre<HostState>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("hash", &self.inner.hash)
            .field("size", &self.inner.size)
            .finish()
    }
}

impl Agent {
    pub(crate) fn new(hash: String, size: usize, pre: ForecasterPre<HostState>) -> Self {
        Self {
            inner: Arc::new(AgentInner { hash, size, pre }),
        }
    }

    /// SHA-256 of the component's bytes, lowercase hex: the agent's identity.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    pub(crate) fn pre(&self) -> &ForecasterPre<HostState> {
        &self.inner.pre
    }
}

/// SHA-256 of `bytes`, lowercase hex: the hash [`Agent::hash`] reports for a component loaded
/// from them, computed without loading it.
#[must_use]
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Refuses what is plainly not a component (too large, not WebAssembly, a core module), before
/// compiling anything: what a server checks of an upload before it keeps the bytes.
///
/// # Errors
///
/// [`LoadError::TooLarge`], [`LoadError::NotWasm`], [`LoadError::CoreModule`], or
/// [`LoadError::Invalid`] for unknown version bytes.
pub fn check_component_header(bytes: &[u8], limit: usize) -> Result<(), LoadError> {
    if bytes.len() > limit {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules have version 1 and layer 0; components set layer 1.
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [1, 0]) => Ok(()),
        ([1, 0], [0, 0]) => Err(LoadError::CoreModule),
        _ => Err(LoadError::Invalid(format!(
            "unknown WebAssembly version/layer bytes {:02x?}",
            &bytes[4..8]
        ))),
    }
}
