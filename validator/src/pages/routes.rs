//! The pages' handlers: read the query, gather the data, render the page; every failure an
//! HTML page of its own (400, 404, 500).

use askama::Template;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::links::Links;
use super::models::{ErrorPage, EventPage, LeaderboardPage, MinerPage, OperatorPage};
use super::queries;
use crate::api::views::LeaderboardView;
use crate::store::{Store, StoreError};

/// Runs listed on a miner's page when the query gives no `runs`.
pub const DEFAULT_RECENT_RUNS: usize = 20;

/// The most runs a miner's page lists.
pub const MAX_RECENT_RUNS: usize = 200;

/// No page but scripts may not run, styles stay inline, nothing is fetched: even text that
/// slipped through unescaped could not act.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page routes, for any state the store can be taken from.
pub(super) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Store: FromRef<S>,
{
    Router::new()
        .route("/", get(leaderboard))
        .route("/miners/{hotkey}", get(miner))
        .route("/events/{id}", get(event))
        .route("/operator", get(operator))
}

/// A query without parameters: any given is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// The query of a miner's page. Read as text so that a bad value gets a message of ours.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinerQuery {
    runs: Option<String>,
}

/// Why a page could not be served.
#[derive(Debug)]
enum PageError {
    BadRequest(String),
    NotFound(String),
    Store(StoreError),
    Render(askama::Error),
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, "Bad request", message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
            Self::Store(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "leaderboard pages: reading the store failed"
                );
                internal()
            }
            Self::Render(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "leaderboard pages: rendering a page failed"
                );
                internal()
            }
        };
        let page = ErrorPage::new(status.as_u16(), heading, message);
        match page.render() {
            Ok(body) => html(status, body),
            // The error page has no data that could fail to render; still never panic.
            Err(_) => html(status, format!("{}\n", status.as_u16())),
        }
    }
}

fn internal() -> (StatusCode, &'static str, String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error",
        "The validator could not build this page; the error was logged.".to_owned(),
    )
}

/// `body` as an HTML answer with `status` and the pages' headers.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn render(page: &impl Template) -> Result<Response, PageError> {
    let body = page.render().map_err(PageError::Render)?;
    Ok(html(StatusCode::OK, body))
}

fn bad_query(rejection: &QueryRejection) -> PageError {
    PageError::BadRequest(rejection.body_text())
}

fn bad_path(rejection: &PathRejection) -> PageError {
    PageError::BadRequest(rejection.body_text())
}

async fn leaderboard(
    State(store): State<Store>,
    query: Result<Query<NoQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    query.map_err(|rejection| bad_query(&rejection))?;
    let view = LeaderboardView::load(&store).await?;
    render(&LeaderboardPage::new(view, Links::Served))
}

async fn miner(
    State(store): State<Store>,
    hotkey: Result<Path<String>, PathRejection>,
    query: Result<Query<MinerQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Path(hotkey) = hotkey.map_err(|rejection| bad_path(&rejection))?;
    let Query(query) = query.map_err(|rejection| bad_query(&rejection))?;
    let recent = parse_runs(query.runs.as_deref())?;
    let data = queries::miner_data(&store, &hotkey, recent)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no miner with hotkey {hotkey:?}.")))?;
    render(&MinerPage::new(data, Links::Served))
}

async fn event(
    State(store): State<Store>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<NoQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Path(id) = id.map_err(|rejection| bad_path(&rejection))?;
    query.map_err(|rejection| bad_query(&rejection))?;
    let data = queries::event_data(&store, &id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no event with id {id:?}.")))?;
    render(&EventPage::new(data, Links::Served))
}

async fn operator(
    State(store): State<Store>,
    query: Result<Query<NoQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    query.map_err(|rejection| bad_query(&rejection))?;
    let data = queries::operator_data(&store).await?;
    render(&OperatorPage::new(data, Links::Served))
}

/// The `runs` parameter of a miner's page: 1 to [`MAX_RECENT_RUNS`].
fn parse_runs(text: Option<&str>) -> Result<usize, PageError> {
    let Some(text) = text else {
        return Ok(DEFAULT_RECENT_RUNS);
    };
    match text.parse::<usize>() {
        Ok(runs) if (1..=MAX_RECENT_RUNS).contains(&runs) => Ok(runs),
        _ => Err(PageError::BadRequest(format!(
            "runs must be a whole number from 1 to {MAX_RECENT_RUNS}, got {text:?}."
        ))),
    }
}
