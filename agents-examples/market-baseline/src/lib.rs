//! The market-price baseline: forecast the market's own probability when the
//! event carries one (`metadata.market_prob`), else the base rate of yes.
//!
//! It makes no gateway calls, so it is also the cheapest benchmark agent.

use sooth_sdk::{Event, Forecast};

/// Share of yes outcomes among resolved binary questions; the forecast when
/// nothing better is known.
const BASE_RATE: f64 = 0.35;

fn forecast(event: Event) -> Result<Forecast, String> {
    Ok(match sooth_sdk::metadata::market_prob(&event) {
        Some(market) => Forecast::new(&event, market).with_reasoning("market price"),
        None => Forecast::new(&event, BASE_RATE).with_reasoning("base rate"),
    })
}

sooth_sdk::register!(forecast);
