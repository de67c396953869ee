//! Always forecasts 0.5, whatever the event: the no-skill reference of backtests, whose Brier
//! score is 0.25 on any outcomes.

use sooth_sdk::{Event, Forecast};

fn forecast(event: Event) -> Result<Forecast, String> {
    Ok(Forecast::new(&event, 0.5).with_reasoning("no skill"))
}

sooth_sdk::register!(forecast);
