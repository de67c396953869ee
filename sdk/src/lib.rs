//! Write a sooth forecasting agent in Rust.
//!
//! This crate owns the guest side of the contract in `wit/sooth.wit`: the
//! generated bindings, the [`register!`] macro that exports an agent, and
//! helpers for the chores every agent has (reading metadata, parsing a
//! probability out of LLM text, retrying gateway calls). It must not hold
//! anything the host needs: the host never links this crate.
//!
//! An agent is one function:
//!
//! ```no_run
//! use sooth_sdk::{Event, Forecast};
//!
//! fn forecast(event: Event) -> Result<Forecast, String> {
//!     let probability = sooth_sdk::metadata::market_prob(&event).unwrap_or(0.5);
//!     Ok(Forecast::new(&event, probability))
//! }
//!
//! sooth_sdk::register!(forecast);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2` (crate type `cdylib`),
//! or `sooth agent build`.

// The generated bindings name this crate by its external name.
extern crate self as sooth_sdk;

pub mod gateway;
pub mod log;
pub mod metadata;
pub mod probability;

#[doc(hidden)]
pub mod bindings {
    //! Generated from `wit/sooth.wit`; use the re-exports instead.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../wit/sooth.wit",
        world: "forecaster",
        pub_export_macro: true,
        default_bindings_module: "sooth_sdk::bindings",
        runtime_path: "sooth_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// A yes/no question to forecast (see `event` in the WIT contract).
pub use bindings::sooth::agent::types::Event;
/// An agent's answer to one event (see `forecast` in the WIT contract).
pub use bindings::sooth::agent::types::Forecast;
/// An instant in whole seconds since the Unix epoch, UTC.
pub use bindings::sooth::agent::types::Timestamp;

impl Forecast {
    /// A forecast for `event` with the given probability and no reasoning.
    ///
    /// The probability is clamped to [0, 1]; NaN becomes 0.5, so that a
    /// helper's arithmetic slip does not void the forecast.
    pub fn new(event: &Event, probability: f64) -> Self {
        Self {
            event_id: event.id.clone(),
            probability: probability::clamp(probability),
            reasoning: None,
        }
    }

    /// The same forecast with a short explanation attached.
    #[must_use]
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning = Some(reasoning.into());
        self
    }
}

/// Export a function `fn(Event) -> Result<Forecast, String>` as the agent.
///
/// Use it once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! register {
    ($forecast:path) => {
        struct __SoothAgent;

        impl $crate::bindings::exports::sooth::agent::agent::Guest for __SoothAgent {
            fn predict(event: $crate::Event) -> ::core::result::Result<$crate::Forecast, String> {
                $forecast(event)
            }
        }

        $crate::bindings::export!(__SoothAgent with_types_in $crate::bindings);
    };
}
