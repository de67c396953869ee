//! What the sooth sandbox, gateway and validator say to each other.
//!
//! This crate owns the wire between them and nothing else: the bodies of
//! gateway requests, answers and errors and the headers beside them, the
//! event as an agent sees it, the rule for service names, run tokens (the
//! claims, `mint` and `verify`), the outbound request signature with its
//! verifier, and key files. It must not run agents, serve HTTP or store
//! anything: the runner, the gateway and the validator build on it, and it
//! keeps the gateway from linking the sandbox.
//!
//! ```
//! use std::collections::BTreeMap;
//! use sooth_protocol::{RunClaims, generate_key, mint, verify};
//!
//! let key = generate_key();
//! let claims = RunClaims {
//!     run_id: "run-1".into(),
//!     miner: "5F...".into(),
//!     agent_hash: "ab12".into(),
//!     caps_usd: BTreeMap::from([("chat".into(), 0.05)]),
//!     linked_key: false,
//!     issued_at: 1_767_225_600,
//!     expires_at: 1_767_226_200,
//!     as_of: 1_767_139_200,
//! };
//! let token = mint(&key, &claims);
//! let verified = verify(&key.verifying_key(), &token, 1_767_225_700).expect("a valid token");
//! assert_eq!(verified, claims);
//! ```

mod event;
mod key_file;
mod service_name;
// Public for their documentation: each module's page is the format's specification (for a
// verifier in another language); the items are re-exported below.
pub mod signing;
pub mod token;
mod wire;

pub use event::{AgentEvent, EventError};
pub use key_file::{KeyFileError, load_or_create_signing_key};
pub use service_name::{MAX_SERVICE_NAME_LEN, ServiceNameError, check_service_name};
pub use signing::{
    HEADER_MINER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_SIGNER, HEADER_TIMESTAMP, RequestSigner,
    SignatureError, SignedHeaders, UPSTREAM_DOMAIN, VerifiedRequest, verify_request,
};
pub use token::{
    CLOCK_SKEW_SECS, MAX_TOKEN_LEN, MAX_TOKEN_LIFETIME_SECS, RunClaims, TOKEN_DOMAIN, TokenError,
    TokenVerifier, VERIFIED_TOKENS_REMEMBERED, encode_public_key, encode_signing_key_hex,
    generate_key, mint, parse_public_key, parse_signing_key_hex, verify,
};
pub use wire::{
    CACHE_HEADER, COST_HEADER, ChatMessage, ChatRequest, ChatResponse, GatewayError,
    GatewayRequest, GatewayResponse, RETRIES_HEADER, SearchRequest, SearchResponse, SearchResult,
    TokenUsage,
};
