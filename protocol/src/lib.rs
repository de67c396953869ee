//! What the sooth sandbox, gateway and validator say to each other.
//!
//! This crate owns the wire between them and nothing else: the bodies of
//! gateway requests, answers and errors and the headers beside them, the
//! event as an agent sees it, the rules for service names and for upstream
//! API keys, run tokens (the claims, `mint` and `verify`), the outbound
//! request signature with its verifier, and key files. Miners speak to validators through two more
//! rooms: [`hotkey`], a miner's identity (ed25519 or sr25519 hotkeys, their
//! text forms with [`ss58`] addresses, secret keys and
//! [hotkey files](hotkey_file)), and [`epistula`], the Epistula v2 headers
//! every miner request is signed with and their verifier, which refuses
//! stale and replayed requests. It must not run agents, serve HTTP or store
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

mod api_key;
mod event;
mod key_file;
mod replay_guard;
mod service_name;
mod wire;
// Public for their documentation: each module's page is the format's specification (for a
// verifier in another language, or a miner's tooling); the items are re-exported below.
pub mod epistula;
pub mod hotkey;
pub mod hotkey_file;
pub mod signing;
pub mod ss58;
pub mod token;

pub use api_key::{ApiKeyError, MAX_API_KEY_LEN, check_api_key};
pub use epistula::{
    EPISTULA_UUIDS_REMEMBERED, EPISTULA_VERSION, EpistulaError, EpistulaHeaders, EpistulaVerifier,
    HEADER_EPISTULA_SIGNATURE, HEADER_EPISTULA_SIGNED_BY, HEADER_EPISTULA_SIGNED_FOR,
    HEADER_EPISTULA_TIMESTAMP, HEADER_EPISTULA_UUID, HEADER_EPISTULA_VERSION, MAX_SIGNED_FOR_LEN,
    VerifiedEpistula, epistula_message, sign as sign_epistula,
};
pub use event::{AgentEvent, EventError};
pub use hotkey::{
    Hotkey, HotkeyError, HotkeyScheme, HotkeySignatureError, SR25519_SIGNING_CONTEXT, SecretHotkey,
};
pub use hotkey_file::{
    HOTKEY_FILE_MAGIC, HotkeyFileError, read_hotkey_file, write_hotkey_file, write_new_hotkey_file,
};
pub use key_file::{KeyFileError, load_or_create_secret_key, load_or_create_signing_key};
pub use service_name::{MAX_SERVICE_NAME_LEN, ServiceNameError, check_service_name};
pub use signing::{
    HEADER_MINER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_SIGNER, HEADER_TIMESTAMP, RequestSigner,
    SignatureError, SignedHeaders, UPSTREAM_DOMAIN, VerifiedRequest, verify_request,
};
pub use ss58::{MAX_SS58_LEN, SS58_GENERIC_PREFIX, Ss58Error, decode_ss58, encode_ss58};
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
