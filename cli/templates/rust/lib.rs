//! {{name}}: a sooth forecasting agent.
//!
//! It forecasts the market's own probability when the event carries one
//! (`metadata.market_prob`), else 0.5. Replace `forecast` with your own
//! model; `sooth_sdk::gateway` reaches the validator's LLM and web-search
//! services.

use sooth_sdk::{Event, Forecast};

fn forecast(event: Event) -> Result<Forecast, String> {
    Ok(match sooth_sdk::metadata::market_prob(&event) {
        Some(market) => Forecast::new(&event, market).with_reasoning("market price"),
        None => Forecast::new(&event, 0.5).with_reasoning("no market price"),
    })
}

sooth_sdk::register!(forecast);
