//! The pages written as files: a static site of a store (after a backtest or a demo).
//!
//! Owns the site's layout (`index.html`, `operator.html`, `miners/*.html`, `events/*.html`,
//! links relative, no refresh) and writing it whole or not at all: everything goes into a
//! temporary folder beside the destination, which then takes the destination's place.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use askama::Template;

use super::PagesError;
use super::links::{Links, file_stem};
use super::models::{EventPage, LeaderboardPage, MinerPage, OperatorPage};
use super::queries;
use super::routes::DEFAULT_RECENT_RUNS;
use crate::api::views::LeaderboardView;
use crate::store::Store;

/// What [`write_static_site`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSummary {
    /// The site's folder.
    pub dir: PathBuf,
    /// Miner pages written.
    pub miners: usize,
    /// Event pages written.
    pub events: usize,
}

/// Writes the pages of `store` as a static site into folder `dir` (created, or replaced
/// whole): `index.html` (the leaderboard), `operator.html`, `miners/<name>.html` for every
/// miner on the leaderboard, registered or having run, and `events/<name>.html` for every
/// event, `<name>` made of `[A-Za-z0-9_-]` only whatever the id. Links are relative, so the
/// folder can be opened from disk or served from anywhere, and pages do not refresh.
///
/// The pages are written into a temporary folder beside `dir`, which is renamed into place at
/// the end: `dir` never holds a half-written site.
///
/// # Errors
///
/// [`PagesError::Store`] when a read fails, [`PagesError::Render`] when a page cannot be
/// rendered, [`PagesError::Io`] when a file or folder cannot be written or renamed (the
/// temporary folder is then removed and `dir` left as it was).
pub async fn write_static_site(store: &Store, dir: &Path) -> Result<SiteSummary, PagesError> {
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".sooth-site-")
        .tempdir_in(&parent)
        .map_err(|source| PagesError::Io {
            path: parent.clone(),
            source,
        })?;
    let root = staging.path();
    for folder in ["miners", "events"] {
        let path = root.join(folder);
        std::fs::create_dir(&path).map_err(|source| PagesError::Io { path, source })?;
    }

    let view = LeaderboardView::load(store).await?;
    let mut hotkeys: Vec<String> = view.rows.iter().map(|row| row.hotkey.clone()).collect();
    write_page(
        root,
        "index.html",
        &LeaderboardPage::new(view, Links::Static { depth: 0 }),
    )?;
    let operator = queries::operator_data(store).await?;
    write_page(
        root,
        "operator.html",
        &OperatorPage::new(operator, Links::Static { depth: 0 }),
    )?;

    let events = store.events_page(None, None, usize::MAX).await?;
    let mut names = HashSet::new();
    let mut event_pages = 0;
    for record in events {
        let id = record.event.id;
        let Some(data) = queries::event_data(store, &id).await? else {
            continue;
        };
        hotkeys.extend(data.runs.iter().map(|run| run.run.hotkey.clone()));
        let name = format!("events/{}.html", file_stem(&id));
        if !names.insert(name.clone()) {
            tracing::warn!(event = %id, "static site: two events share a file name; skipped one");
            continue;
        }
        write_page(
            root,
            &name,
            &EventPage::new(data, Links::Static { depth: 1 }),
        )?;
        event_pages += 1;
    }

    hotkeys.extend(
        store
            .registered_miners()
            .await?
            .into_iter()
            .map(|miner| miner.hotkey),
    );
    let mut seen = HashSet::new();
    let mut miner_pages = 0;
    for hotkey in hotkeys {
        if !seen.insert(hotkey.clone()) {
            continue;
        }
        let Some(data) = queries::miner_data(store, &hotkey, DEFAULT_RECENT_RUNS).await? else {
            continue;
        };
        let name = format!("miners/{}.html", file_stem(&hotkey));
        if !names.insert(name.clone()) {
            tracing::warn!(%hotkey, "static site: two miners share a file name; skipped one");
            continue;
        }
        write_page(
            root,
            &name,
            &MinerPage::new(data, Links::Static { depth: 1 }),
        )?;
        miner_pages += 1;
    }

    replace_dir(staging, dir, &parent)?;
    Ok(SiteSummary {
        dir: dir.to_owned(),
        miners: miner_pages,
        events: event_pages,
    })
}

fn write_page(root: &Path, name: &str, page: &impl Template) -> Result<(), PagesError> {
    let body = page.render()?;
    let path = root.join(name);
    std::fs::write(&path, body).map_err(|source| PagesError::Io { path, source })
}

/// Puts the finished `staging` folder at `dir`: a rename, after moving an existing `dir` aside
/// (a folder cannot be renamed over a non-empty one), which is removed last.
fn replace_dir(staging: tempfile::TempDir, dir: &Path, parent: &Path) -> Result<(), PagesError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PagesError::Io { path, source }
    };
    if dir.exists() {
        let aside = tempfile::Builder::new()
            .prefix(".sooth-site-old-")
            .tempdir_in(parent)
            .map_err(io(parent))?;
        let old = aside.path().join("site");
        std::fs::rename(dir, &old).map_err(io(dir))?;
        if let Err(source) = std::fs::rename(staging.path(), dir) {
            // Put the old site back rather than leave nothing.
            let _ = std::fs::rename(&old, dir);
            return Err(PagesError::Io {
                path: dir.to_owned(),
                source,
            });
        }
        // `aside` removes the old site when dropped.
        drop(aside);
    } else {
        std::fs::rename(staging.path(), dir).map_err(io(dir))?;
    }
    // Renamed into place: the staging folder's name no longer exists, nothing to remove.
    let _ = staging.keep();
    Ok(())
}
