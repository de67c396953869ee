//! Prediction-market listings in the shape of Polymarket's public Gamma API (`GET /markets`).
//!
//! This module owns turning market listings into events and resolutions. A market is a JSON
//! object with, among others, `id`, `question`, `description`, `slug`, `endDate`, `closed`,
//! `active`, `closedTime`, `outcomes` and `outcomePrices`; the last two are JSON arrays encoded
//! as strings (`"[\"Yes\", \"No\"]"`, `"[\"0.45\", \"0.55\"]"`), and the prices are the
//! market's mid prices. Only yes/no markets are read.
//!
//! - An open market whose Yes price is within [`PRICE_BAND`] when received (SPEC, "events")
//!   becomes an [`Event`] `polymarket:{id}`, created at the instant it was received, cut off at
//!   `endDate`, with the price as `market_prob` in its metadata. Open markets outside the band,
//!   or already past their end date, are ignored: there is nothing left to forecast.
//! - A closed market whose Yes price settled at 1 or 0 becomes a [`Resolution`] at its
//!   `closedTime` (or `endDate`). One closed without a decided price (a 50-50 settlement, or
//!   not yet settled) is ignored. Resolutions of markets the daemon has no event for are the
//!   daemon's to drop.
//!
//! A [`GammaReader`] delivers each market's event and resolution once, so that polling the same
//! listing again brings only what is new.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::{Client, Url};
use serde_json::{Map, Value};

use super::http::{client, get_text, parse_url};
use super::row::{kind_of, missing, wrong_type};
use super::{Batch, Position, ResponseProblem, RowError, RowProblem, SourceError, UrlProblem};
use crate::event::{Event, EventError, Outcome, Resolution};

/// SPEC, "events": markets are kept when their mid price is in [0.2, 0.8] when received.
pub const PRICE_BAND: RangeInclusive<f64> = 0.2..=0.8;

/// Prefix of the events' ids, so that they cannot collide with other sources' ids.
pub const ID_PREFIX: &str = "polymarket:";

/// Polymarket's public Gamma API.
pub const DEFAULT_BASE_URL: &str = "https://gamma-api.polymarket.com";

/// Markets asked for per request (the Gamma API caps pages at a few hundred).
pub const PAGE_SIZE: usize = 100;

/// Most pages read in one fetch, so that a listing that never ends cannot hold the daemon.
pub const MAX_PAGES: usize = 50;

/// What one market becomes.
#[derive(Debug, Clone, PartialEq)]
enum Mapped {
    Event(Event),
    Resolution(Resolution),
    /// Read fine, but nothing to do with it.
    Ignored,
}

/// Reads market listings into batches, remembering what it delivered.
#[derive(Debug, Default)]
pub struct GammaReader {
    events: HashSet<String>,
    resolutions: HashSet<String>,
}

impl GammaReader {
    /// A reader that has delivered nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Read a listing's JSON text (an array of markets) received at `received_at`; `origin`
    /// names it in errors.
    ///
    /// # Errors
    ///
    /// [`SourceError::BadResponse`] when the text is not a JSON array; malformed markets are
    /// only reported in [`Batch::rejected`].
    pub fn read_text(
        &mut self,
        text: &str,
        received_at: DateTime<Utc>,
        origin: &str,
    ) -> Result<Batch, SourceError> {
        let markets = parse_listing(text).map_err(|problem| SourceError::BadResponse {
            url: origin.to_owned(),
            problem,
        })?;
        Ok(self.read_markets(markets, received_at, origin))
    }

    /// Read markets already parsed as JSON values, received at `received_at`.
    #[must_use]
    pub fn read_markets(
        &mut self,
        markets: Vec<Value>,
        received_at: DateTime<Utc>,
        origin: &str,
    ) -> Batch {
        let mut batch = Batch::default();
        for (index, market) in markets.into_iter().enumerate() {
            match map_market(&market, received_at) {
                Err(error) => batch.rejected.push(RowError {
                    origin: origin.to_owned(),
                    position: Position::Item {
                        list: "markets",
                        index,
                    },
                    problem: RowProblem::Field(error),
                }),
                // Listings overlap between polls and between pages (offsets shift as markets
                // open and close), so a market seen again is expected, not an error.
                Ok(Mapped::Event(event)) if self.events.insert(event.id.clone()) => {
                    batch.events.push(event);
                }
                Ok(Mapped::Resolution(resolution))
                    if self.resolutions.insert(resolution.event_id.clone()) =>
                {
                    batch.resolutions.push(resolution);
                }
                Ok(_) => batch.ignored += 1,
            }
        }
        batch
    }
}

/// Read a listing's JSON text with a fresh [`GammaReader`].
///
/// # Errors
///
/// As [`GammaReader::read_text`].
pub fn parse_markets(
    text: &str,
    received_at: DateTime<Utc>,
    origin: &str,
) -> Result<Batch, SourceError> {
    GammaReader::new().read_text(text, received_at, origin)
}

fn parse_listing(text: &str) -> Result<Vec<Value>, ResponseProblem> {
    match ResponseProblem::parse_json(text)? {
        Value::Array(markets) => Ok(markets),
        other => Err(ResponseProblem::Shape {
            expected: "a JSON array of markets",
            found: kind_of(&other),
        }),
    }
}

fn map_market(market: &Value, received_at: DateTime<Utc>) -> Result<Mapped, EventError> {
    let Value::Object(market) = market else {
        return Err(EventError::WrongType {
            field: "market".into(),
            expected: "a JSON object",
            found: kind_of(market),
        });
    };
    let id = match market.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        None | Some(Value::Null) => return Err(missing("id")),
        Some(other) => return Err(wrong_type("id", "a string", other)),
    };
    let Some(yes_price) = yes_price(market)? else {
        return Ok(Mapped::Ignored);
    };
    let event_id = format!("{ID_PREFIX}{id}");
    let end_date = optional_instant(market, "endDate")?;
    if bool_field(market, "closed")?.unwrap_or(false) {
        let outcome = if yes_price == 1.0 {
            Outcome::Yes
        } else if yes_price == 0.0 {
            Outcome::No
        } else {
            return Ok(Mapped::Ignored);
        };
        let resolved_at = optional_instant(market, "closedTime")?
            .or(end_date)
            .ok_or_else(|| missing("closedTime"))?;
        let resolution = Resolution {
            event_id,
            outcome,
            resolved_at,
        };
        resolution.validate()?;
        return Ok(Mapped::Resolution(resolution));
    }
    let cutoff = end_date.ok_or_else(|| missing("endDate"))?;
    if bool_field(market, "active")? == Some(false)
        || cutoff <= received_at
        || !PRICE_BAND.contains(&yes_price)
    {
        return Ok(Mapped::Ignored);
    }
    let title = string_field(market, "question")?.ok_or_else(|| missing("question"))?;
    let mut event = Event::new(event_id, title, received_at);
    event.description = string_field(market, "description")?.unwrap_or_default();
    event.cutoff = cutoff;
    let mut metadata = Map::new();
    metadata.insert("market_prob".into(), Value::from(yes_price));
    metadata.insert(
        "market_prob_kind".into(),
        Value::from("Polymarket mid price of Yes when the event was created"),
    );
    metadata.insert("source".into(), Value::from("polymarket"));
    metadata.insert("market_id".into(), Value::from(id));
    if let Some(slug) = string_field(market, "slug")? {
        metadata.insert(
            "url".into(),
            Value::from(format!("https://polymarket.com/market/{slug}")),
        );
        metadata.insert("slug".into(), Value::from(slug));
    }
    for (from, to) in [("volumeNum", "volume"), ("liquidityNum", "liquidity")] {
        if let Some(number) = market.get(from).filter(|value| value.is_number()) {
            metadata.insert(to.into(), number.clone());
        }
    }
    event.metadata = metadata;
    event.validate()?;
    Ok(Mapped::Event(event))
}

/// The Yes outcome's price, or `None` for a market that is not a yes/no question.
fn yes_price(market: &Map<String, Value>) -> Result<Option<f64>, EventError> {
    // Gamma omits `outcomes` on some old markets; they are all Yes/No.
    let outcomes = match encoded_array(market, "outcomes")? {
        Some(outcomes) => outcomes,
        None => vec![Value::from("Yes"), Value::from("No")],
    };
    let names: Vec<&str> = outcomes.iter().filter_map(Value::as_str).collect();
    let yes = names
        .iter()
        .position(|name| name.eq_ignore_ascii_case("yes"));
    let no = names
        .iter()
        .position(|name| name.eq_ignore_ascii_case("no"));
    let (2, Some(yes), Some(_)) = (outcomes.len(), yes, no) else {
        return Ok(None);
    };
    let prices = encoded_array(market, "outcomePrices")?.ok_or_else(|| missing("outcomePrices"))?;
    let out_of_range = |found: &Value| EventError::OutOfRange {
        field: "outcomePrices".into(),
        reason: "must hold one price in [0, 1] per outcome",
        found: found.to_string(),
    };
    if prices.len() != outcomes.len() {
        return Err(out_of_range(&Value::Array(prices)));
    }
    let price = &prices[yes];
    // Gamma writes prices as decimal strings; numbers are accepted too.
    let parsed = match price {
        Value::String(text) => text.trim().parse::<f64>().ok(),
        Value::Number(number) => number.as_f64(),
        _ => None,
    };
    match parsed {
        Some(p) if (0.0..=1.0).contains(&p) => Ok(Some(p)),
        _ => Err(out_of_range(price)),
    }
}

/// A field holding a JSON array encoded as a string (a real array is accepted too).
fn encoded_array(market: &Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, EventError> {
    let bad = |found: &Value| EventError::WrongType {
        field: key.to_owned(),
        expected: "a JSON array encoded as a string",
        found: kind_of(found),
    };
    match market.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(Value::Array(items)) => Ok(Some(items)),
            Ok(other) => Err(bad(&other)),
            Err(_) => Err(EventError::OutOfRange {
                field: key.to_owned(),
                reason: "must be a JSON array encoded as a string",
                found: Value::from(text.as_str()).to_string(),
            }),
        },
        Some(other) => Err(bad(other)),
    }
}

/// Gamma's instants: RFC 3339 (`endDate`), or `2024-11-06 12:34:56+00` (`closedTime`), or a
/// bare date.
fn optional_instant(
    market: &Map<String, Value>,
    key: &str,
) -> Result<Option<DateTime<Utc>>, EventError> {
    let Some(text) = string_field(market, key)? else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(&text)
        .or_else(|_| DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|instant| instant.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
                .map(|midnight| midnight.and_utc())
        });
    parsed.map(Some).ok_or_else(|| EventError::BadInstant {
        field: key.to_owned(),
        found: Value::from(text).to_string(),
    })
}

fn string_field(market: &Map<String, Value>, key: &str) -> Result<Option<String>, EventError> {
    match market.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn bool_field(market: &Map<String, Value>, key: &str) -> Result<Option<bool>, EventError> {
    match market.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(wrong_type(key, "a boolean", other)),
    }
}

/// Fetches listings from a Gamma API base URL and reads them with one [`GammaReader`].
///
/// The daemon passes its clock's time as the instant received, so that a backtest or a
/// simulated clock creates events at simulated instants.
#[derive(Debug)]
pub struct GammaClient {
    client: Client,
    base: Url,
    reader: GammaReader,
}

impl GammaClient {
    /// A client for the API at `base_url` (e.g. [`DEFAULT_BASE_URL`]).
    ///
    /// # Errors
    ///
    /// [`SourceError::BadUrl`] when `base_url` is not an absolute http(s) URL, or
    /// [`SourceError::Request`] when the HTTP client cannot be built.
    pub fn new(base_url: &str) -> Result<Self, SourceError> {
        let mut base = parse_url(base_url)?;
        // `Url::join` replaces the last segment unless the path ends with a slash.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            client: client(base_url)?,
            base,
            reader: GammaReader::new(),
        })
    }

    /// Fetch the open markets, page by page, and read them as received at `received_at`.
    ///
    /// # Errors
    ///
    /// [`SourceError`] when a page cannot be fetched or is not a JSON array; then nothing is
    /// read (not even the pages fetched before), so nothing is marked delivered and the next
    /// fetch tries again.
    pub async fn open_markets(&mut self, received_at: DateTime<Utc>) -> Result<Batch, SourceError> {
        let mut markets = Vec::new();
        let mut origin = String::new();
        for page in 0..MAX_PAGES {
            let offset = (page * PAGE_SIZE).to_string();
            let limit = PAGE_SIZE.to_string();
            let query = [
                ("closed", "false"),
                ("limit", limit.as_str()),
                ("offset", offset.as_str()),
            ];
            let (url, items) = self.get_markets(&query).await?;
            if page == 0 {
                origin = url;
            }
            let count = items.len();
            markets.extend(items);
            if count < PAGE_SIZE {
                break;
            }
        }
        Ok(self.reader.read_markets(markets, received_at, &origin))
    }

    /// Fetch the markets with these ids (with or without [`ID_PREFIX`]), e.g. to learn how the
    /// daemon's open events resolved.
    ///
    /// # Errors
    ///
    /// [`SourceError`] when the request fails or the answer is not a JSON array.
    pub async fn markets_by_id(
        &mut self,
        ids: &[&str],
        received_at: DateTime<Utc>,
    ) -> Result<Batch, SourceError> {
        if ids.is_empty() {
            return Ok(Batch::default());
        }
        let query: Vec<(&str, &str)> = ids
            .iter()
            .map(|id| ("id", id.strip_prefix(ID_PREFIX).unwrap_or(id)))
            .collect();
        let (origin, markets) = self.get_markets(&query).await?;
        Ok(self.reader.read_markets(markets, received_at, &origin))
    }

    async fn get_markets(
        &self,
        query: &[(&str, &str)],
    ) -> Result<(String, Vec<Value>), SourceError> {
        let mut url = self
            .base
            .join("markets")
            .map_err(|error| SourceError::BadUrl {
                url: self.base.to_string(),
                problem: UrlProblem::Parse(error),
            })?;
        url.query_pairs_mut().extend_pairs(query);
        let origin = url.to_string();
        let body = get_text(&self.client, url).await?;
        let markets = parse_listing(&body).map_err(|problem| SourceError::BadResponse {
            url: origin.clone(),
            problem,
        })?;
        Ok((origin, markets))
    }
}

#[cfg(test)]
mod tests;
