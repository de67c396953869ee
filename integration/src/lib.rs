//! End-to-end tests that need more than one of sooth's crates at once: the
//! sandbox's HTTP gateway client against the gateway, the gateway against
//! the fake upstream, a miner's key linked through the validator reaching the
//! gateway. The tests live in `tests/`; this crate ships nothing, and it is a
//! crate of its own so that the gateway's crate need not link the sandbox (nor
//! the validator the gateway) to test them together.
