//! The store the storage benchmarks fill through the store's API: miners with a verified
//! version each, and events spaced 864 s apart (100 a day) with a market price.

use chrono::{DateTime, TimeDelta, Utc};
use sooth_validator::store::Store;
use sooth_validator::{AgentVersion, Event, Miner};

/// Registers `count` miners (`hotkey-000`...), each with version `hash-000`... verified two
/// days before `start`.
pub async fn miners_with_versions(
    store: &Store,
    count: usize,
    start: DateTime<Utc>,
) -> Result<Vec<Miner>, Box<dyn std::error::Error>> {
    let mut miners = Vec::with_capacity(count);
    for i in 0..count {
        let miner = Miner {
            uid: u16::try_from(i)?,
            hotkey: format!("hotkey-{i:03}"),
            registered_at: start - TimeDelta::days(2),
        };
        store.register_miner(&miner).await?;
        store
            .add_agent_version(&AgentVersion {
                hotkey: miner.hotkey.clone(),
                hash: format!("hash-{i:03}"),
                uploaded_at: start - TimeDelta::days(2),
                verified_at: Some(start - TimeDelta::days(2)),
            })
            .await?;
        miners.push(miner);
    }
    Ok(miners)
}

/// Stores `count` open events (`event-00000`...) from `start`, 864 s apart, with market price
/// 0.5 and `description`.
pub async fn events(
    store: &Store,
    count: usize,
    start: DateTime<Utc>,
    description: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    for i in 0..count {
        let created_at = start + TimeDelta::seconds(864 * i64::try_from(i)?);
        store
            .insert_event(&Event {
                kind: "synthetic".to_owned(),
                description: description.to_owned(),
                metadata: serde_json::Map::from_iter([(
                    "market_prob".to_owned(),
                    serde_json::json!(0.5),
                )]),
                ..Event::new(
                    format!("event-{i:05}"),
                    format!("Question {i}?"),
                    created_at,
                )
            })
            .await?;
    }
    Ok(())
}
