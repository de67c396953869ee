//! The leaderboard's web pages: server-rendered HTML with inline SVG charts.
//!
//! Owns the pages the validator serves next to its JSON API (`/` the leaderboard,
//! `/miners/{hotkey}`, `/events/{id}`, `/operator`) and the same pages written as a static
//! site ([`write_static_site`], for `sooth backtest --out` and `sooth demo --out`). Pages are
//! rendered by askama templates (`validator/templates/`), which escape every text from the
//! data; the charts are small SVG drawn by hand ([`svg`]), their text escaped too. No page
//! carries JavaScript, served pages refresh themselves every minute, and every failure is an
//! HTML page of its own: 400 for a bad query, 404 for an unknown miner or event, 500 (logged)
//! when the store fails.
//!
//! It must not decide a rule nor write to the store: the leaderboard's numbers come from the
//! loader the JSON API uses ([`LeaderboardView::load`](crate::api::views::LeaderboardView::load)),
//! so that both always agree.
//!
//! Rooms: `routes` (the handlers), [`queries`] (what each page reads), [`models`] (the view
//! models), `operator` (the operator page's model) and `format` (the number formats), both
//! re-exported by `models`, [`svg`] (the charts), [`links`] (URLs and file names from hostile
//! ids) and `static_site` (the files).

mod format;
pub mod links;
pub mod models;
mod operator;
pub mod queries;
mod routes;
mod static_site;
pub mod svg;

use std::path::PathBuf;

use axum::Router;
use axum::extract::FromRef;
use thiserror::Error;

use crate::store::{Store, StoreError};

pub use routes::{DEFAULT_RECENT_RUNS, MAX_RECENT_RUNS};
pub use static_site::{SiteSummary, write_static_site};

/// Why the static site could not be written. Served pages answer errors as HTML pages instead.
#[derive(Debug, Error)]
pub enum PagesError {
    /// Reading the store failed.
    #[error("cannot read the validator database for the pages")]
    Store(#[from] StoreError),
    /// A template failed to render.
    #[error("cannot render a page")]
    Render(#[from] askama::Error),
    /// A file or folder could not be written, renamed or removed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The pages over `store`, ready to serve (e.g. with `axum::serve`, or merged into the API's
/// router, which [`crate::api::router`] does).
pub fn router(store: Store) -> Router {
    routes::<Store>().with_state(store)
}

/// The page routes for a router whose state gives a [`Store`], to merge into it.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Store: FromRef<S>,
{
    routes::routes()
}
