//! Which imports a component may have: the contract's interfaces and the
//! WASI 0.2 interfaces the host provides (with their capabilities denied by
//! configuration). Anything else is refused before the component runs.

use wasmtime::Engine;
use wasmtime::component::Component;

/// WASI 0.2 interfaces the host links. Filesystem and sockets are linked so
/// that ordinary toolchains' output loads, but the run's context grants no
/// directory and no address.
const WASI_INTERFACES: &[&str] = &[
    "cli/environment",
    "cli/exit",
    "cli/stdin",
    "cli/stdout",
    "cli/stderr",
    "cli/terminal-input",
    "cli/terminal-output",
    "cli/terminal-stdin",
    "cli/terminal-stdout",
    "cli/terminal-stderr",
    "clocks/monotonic-clock",
    "clocks/wall-clock",
    "filesystem/types",
    "filesystem/preopens",
    "io/error",
    "io/poll",
    "io/streams",
    "random/random",
    "random/insecure",
    "random/insecure-seed",
    "sockets/network",
    "sockets/instance-network",
    "sockets/tcp",
    "sockets/tcp-create-socket",
    "sockets/udp",
    "sockets/udp-create-socket",
    "sockets/ip-name-lookup",
];

/// Whether an import name is within the contract.
pub(crate) fn is_allowed(name: &str) -> bool {
    if sooth_wit::IMPORTABLE_INTERFACES.contains(&name) {
        return true;
    }
    let Some(rest) = name.strip_prefix("wasi:") else {
        return false;
    };
    let Some((interface, version)) = rest.split_once('@') else {
        return false;
    };
    version.starts_with("0.2.") && WASI_INTERFACES.contains(&interface)
}

/// The first import of `component` outside the contract, if any.
pub(crate) fn first_forbidden(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| !is_allowed(name))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::is_allowed;

    #[test]
    fn allowlist() {
        assert!(is_allowed("sooth:agent/gateway@0.1.0"));
        assert!(is_allowed("wasi:io/streams@0.2.6"));
        assert!(is_allowed("wasi:cli/environment@0.2.0"));
        assert!(!is_allowed("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_allowed("wasi:io/streams@0.3.0"));
        assert!(!is_allowed("sooth:agent/gateway@0.2.0"));
        assert!(!is_allowed("evil:net/raw"));
        assert!(!is_allowed("wasi:io/streams"));
    }
}
