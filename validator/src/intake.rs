//! The live validator's event sources, polled together, with their progress kept in the store.
//!
//! This module owns which sources a live validator reads (watched directories of JSON Lines,
//! HTTP feeds, prediction-market listings) and where each has read up to across restarts: a
//! watched directory's bytes and lines consumed per file, a feed's cursor. Progress is saved
//! only after the daemon has stored what was read ([`Intake::save_progress`]), so a crash in
//! between makes a source deliver rows again, which the daemon accepts again without change.
//! Market listings are read again in full at their own, slower pace; their resolutions are
//! asked for the listed events whose cutoff has passed. It must not parse rows (that is
//! [`crate::sources`]) nor store events (that is [`crate::daemon`]).

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::config::SourcesConfig;
use crate::sources::gamma::{GammaClient, ID_PREFIX};
use crate::sources::http_feed::HttpFeed;
use crate::sources::jsonl::{FileProgress, JsonlWatcher};
use crate::sources::{Batch, SourceError};
use crate::store::{Store, StoreError};

/// Markets asked for per resolution request.
const RESOLUTION_BATCH: usize = 50;

/// Why the sources could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// A source is misconfigured (a bad URL).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The saved progress could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Markets {
    client: GammaClient,
    every: TimeDelta,
    next_at: DateTime<Utc>,
}

/// Every configured source of a live validator.
pub struct Intake {
    store: Store,
    watchers: Vec<(String, JsonlWatcher)>,
    feeds: Vec<(String, HttpFeed)>,
    markets: Option<Markets>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .watchers
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(self.feeds.iter().map(|(name, _)| name.as_str()))
            .collect();
        formatter
            .debug_struct("Intake")
            .field("sources", &names)
            .field("markets", &self.markets.is_some())
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// Opens the sources of `config`, each resuming where its saved progress says.
    ///
    /// # Errors
    ///
    /// [`IntakeError::Source`] for a bad URL, [`IntakeError::Store`] when the progress cannot be
    /// read.
    pub async fn open(config: &SourcesConfig, store: &Store) -> Result<Self, IntakeError> {
        let mut watchers = Vec::new();
        for dir in &config.jsonl_dirs {
            let name = format!("jsonl:{}", dir.display());
            let progress = store
                .source_state(&name)
                .await?
                .map(|state| files_from(&state))
                .unwrap_or_default();
            watchers.push((name, JsonlWatcher::resume(dir.clone(), progress)));
        }
        let mut feeds = Vec::new();
        for url in &config.http_feeds {
            let name = format!("feed:{url}");
            let cursor = store
                .source_state(&name)
                .await?
                .and_then(|state| state["cursor"].as_str().map(str::to_owned));
            feeds.push((name, HttpFeed::new(url)?.resume_at(cursor)));
        }
        let markets = match &config.gamma_url {
            Some(url) => Some(Markets {
                client: GammaClient::new(url)?,
                every: TimeDelta::seconds(
                    i64::try_from(config.gamma_poll_secs).unwrap_or(i64::MAX),
                ),
                next_at: DateTime::<Utc>::MIN_UTC,
            }),
            None => None,
        };
        Ok(Self {
            store: store.clone(),
            watchers,
            feeds,
            markets,
        })
    }

    /// Reads what every source has that is new at `now`. A source that fails is logged and
    /// asked again next time; the others are read all the same.
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Batch {
        let mut batch = Batch::default();
        for (name, watcher) in &mut self.watchers {
            match watcher.poll() {
                Ok(read) => batch.append(read),
                Err(error) => {
                    tracing::warn!(source = %name, error = &error as &dyn std::error::Error, "source unreadable")
                }
            }
        }
        for (name, feed) in &mut self.feeds {
            match feed.poll().await {
                Ok(read) => batch.append(read),
                Err(error) => {
                    tracing::warn!(source = %name, error = &error as &dyn std::error::Error, "feed failed")
                }
            }
        }
        if let Some(markets) = &mut self.markets
            && now >= markets.next_at
        {
            markets.next_at = now + markets.every;
            match markets.client.open_markets(now).await {
                Ok(read) => batch.append(read),
                Err(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "market listing failed"
                ),
            }
            match self.store.open_events(now).await {
                Ok(open) => {
                    let ended: Vec<&str> = open
                        .iter()
                        .filter(|record| {
                            record.event.id.starts_with(ID_PREFIX) && record.event.cutoff <= now
                        })
                        .map(|record| record.event.id.as_str())
                        .collect();
                    for ids in ended.chunks(RESOLUTION_BATCH) {
                        match markets.client.markets_by_id(ids, now).await {
                            Ok(read) => batch.resolutions.extend(read.resolutions),
                            Err(error) => tracing::warn!(
                                error = &error as &dyn std::error::Error,
                                "market resolutions failed"
                            ),
                        }
                    }
                }
                Err(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot list open events"
                ),
            }
        }
        batch
    }

    /// Saves where each watched directory and feed has read up to, at `now`. Call it once what
    /// [`poll`](Self::poll) returned is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store cannot be written; the sources then deliver those rows
    /// again after a restart.
    pub async fn save_progress(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for (name, watcher) in &self.watchers {
            let files: Vec<Value> = watcher
                .progress()
                .map(|(path, progress)| {
                    json!({
                        "path": path.to_string_lossy(),
                        "bytes": progress.bytes,
                        "lines": progress.lines,
                    })
                })
                .collect();
            self.store
                .save_source_state(name, &json!({ "files": files }), now)
                .await?;
        }
        for (name, feed) in &self.feeds {
            if let Some(cursor) = feed.cursor() {
                self.store
                    .save_source_state(name, &json!({ "cursor": cursor }), now)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A watched directory's saved progress; entries that do not parse are read again from the
/// start of their file.
fn files_from(state: &Value) -> Vec<(PathBuf, FileProgress)> {
    state["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|file| {
            Some((
                PathBuf::from(file["path"].as_str()?),
                FileProgress {
                    bytes: file["bytes"].as_u64()?,
                    lines: usize::try_from(file["lines"].as_u64()?).ok()?,
                },
            ))
        })
        .collect()
}
