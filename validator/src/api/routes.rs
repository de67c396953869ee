//! The handlers: read the query, ask the store, answer a view.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, Uri};
use serde::Deserialize;

use super::views::{
    EventView, HealthView, LeaderboardView, MinerRunView, MinerView, RunView, WeightsView,
};
use super::{ApiError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::store::{EventStatus, Store, StoreError};

/// The query of `GET /v1/events`. Values are read as text so that a bad one gets a message of
/// ours; unknown parameters are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    status: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// The query of a paginated list without filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<String>,
    before: Option<String>,
}

pub(super) async fn health() -> Json<HealthView> {
    Json(HealthView { status: "ok" })
}

pub(super) async fn events(
    State(store): State<Store>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let status = query.status.as_deref().map(parse_status).transpose()?;
    let limit = parse_limit(query.limit.as_deref())?;
    let events = store
        .events_page(status, query.before.as_deref(), limit)
        .await
        .map_err(unknown_before)?;
    Ok(Json(events.into_iter().map(EventView::from).collect()))
}

pub(super) async fn event(
    State(store): State<Store>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    let event = store.event(&id).await?.ok_or_else(|| no_event(&id))?;
    Ok(Json(event.into()))
}

pub(super) async fn event_runs(
    State(store): State<Store>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    if store.event(&id).await?.is_none() {
        return Err(no_event(&id));
    }
    let runs = store.runs_of_event(&id).await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}

pub(super) async fn miner(
    State(store): State<Store>,
    hotkey: Result<Path<String>, PathRejection>,
) -> Result<Json<MinerView>, ApiError> {
    let Path(hotkey) = hotkey.map_err(bad_path)?;
    let record = store
        .miner(&hotkey)
        .await?
        .ok_or_else(|| no_miner(&hotkey))?;
    let versions = store.agent_versions(&hotkey).await?;
    let standing = store
        .latest_weights()
        .await?
        .into_iter()
        .find(|row| row.hotkey == hotkey);
    Ok(Json(MinerView::new(record, versions, standing)))
}

pub(super) async fn miner_runs(
    State(store): State<Store>,
    hotkey: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Vec<MinerRunView>>, ApiError> {
    let Path(hotkey) = hotkey.map_err(bad_path)?;
    let Query(query) = query.map_err(bad_query)?;
    let limit = parse_limit(query.limit.as_deref())?;
    let runs = store
        .miner_runs(&hotkey, query.before.as_deref(), limit)
        .await
        .map_err(|error| match error {
            StoreError::UnknownMiner { hotkey } => no_miner(&hotkey),
            other => unknown_before(other),
        })?;
    Ok(Json(runs.into_iter().map(MinerRunView::from).collect()))
}

pub(super) async fn leaderboard(
    State(store): State<Store>,
) -> Result<Json<LeaderboardView>, ApiError> {
    Ok(Json(LeaderboardView::load(&store).await?))
}

pub(super) async fn weights(State(store): State<Store>) -> Result<Json<WeightsView>, ApiError> {
    Ok(Json(store.latest_weights().await?.into()))
}

pub(super) async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint at {}", uri.path()))
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

fn parse_status(word: &str) -> Result<EventStatus, ApiError> {
    match word {
        "open" => Ok(EventStatus::Open),
        "resolved" => Ok(EventStatus::Resolved),
        other => Err(ApiError::BadQuery(format!(
            "status must be open or resolved, got {other:?}"
        ))),
    }
}

fn parse_limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::BadQuery(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"
        ))),
    }
}

/// A page asked for after an event that does not exist is a bad query, not a missing resource.
fn unknown_before(error: StoreError) -> ApiError {
    match error {
        StoreError::UnknownEvent { event_id } => ApiError::BadQuery(format!(
            "before must be the id of an event, and there is no event with id {event_id:?}"
        )),
        other => ApiError::Store(other),
    }
}

fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::BadQuery(rejection.body_text())
}

fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::BadQuery(rejection.body_text())
}

fn no_event(id: &str) -> ApiError {
    ApiError::NotFound(format!("no event with id {id:?}"))
}

fn no_miner(hotkey: &str) -> ApiError {
    ApiError::NotFound(format!("no miner with hotkey {hotkey:?}"))
}
