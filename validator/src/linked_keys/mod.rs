//! Miners' own service keys, linked through the validator's API and handed to its gateway.
//!
//! SPEC's gateway rule: each run has a cost cap per service, higher for a miner that linked
//! its own API key. A miner sends its key signed (`POST /v1/services/{service}/key`, through
//! the upload desk); this module owns what happens to it then: the key's shape
//! ([`ServiceKey`], the gateway's rule), its seal at rest ([`KeySealer`]: XChaCha20-Poly1305
//! under a key file kept apart from the database), its handing to the gateway ([`MinerKeys`]
//! through a [`LinkedKeySink`] the caller provides, since the validator does not link the
//! gateway), and taking back the keys an activation dropped (a new upload requires linking
//! again; the store drops them in the activation's transaction). A key is in clear only in
//! memory, while it is sealed or handed; it never reaches a log, an error or an answer.

mod miner_keys;
mod sealer;
mod service_key;
mod sink;

pub use miner_keys::{KeyLinked, MinerKeyError, MinerKeys, SyncReport};
pub use sealer::{KeySealer, NONCE_LEN, SealError, Sealed};
pub use service_key::ServiceKey;
pub use sink::{LinkedKeySink, SinkError, SinkFuture};
