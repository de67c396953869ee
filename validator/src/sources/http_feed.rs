//! An HTTP JSON feed of events and resolutions, read with a cursor.
//!
//! This module owns the feed protocol: `GET {url}?cursor=C` (no `cursor` on the first read)
//! answers `{"events": [...], "resolutions": [...], "next_cursor": "..."}`, where the lists
//! hold rows of [`super::row`] (both may be absent, meaning empty). The feed keeps the cursor
//! and sends the next one on the next poll, so nothing is read twice; an absent or null
//! `next_cursor` means "nothing further yet", and the cursor stays.
//!
//! A poll that fails as a whole (no connection, a status other than 2xx, a body that is not the
//! expected JSON) is an error and does not move the cursor, so the next poll asks again for the
//! same rows. A malformed row inside a good response is reported with its list and index and
//! skipped; the cursor moves past it, since asking again would bring back the same bad row.

use reqwest::{Client, Url};
use serde_json::Value;

use super::http::{client, get_text, parse_url};
use super::row;
use super::{Batch, Position, ResponseProblem, Seen, Source, SourceError};

/// A feed at one URL, with the cursor reached so far.
#[derive(Debug)]
pub struct HttpFeed {
    client: Client,
    url: Url,
    cursor: Option<String>,
    seen: Seen,
}

impl HttpFeed {
    /// A feed read from its start.
    ///
    /// # Errors
    ///
    /// [`SourceError::BadUrl`] when `url` is not an absolute http(s) URL, or
    /// [`SourceError::Request`] when the HTTP client cannot be built.
    pub fn new(url: &str) -> Result<Self, SourceError> {
        Self::with_client(client(url)?, url)
    }

    /// A feed read with the given client (shared connection pool, other timeouts).
    ///
    /// # Errors
    ///
    /// [`SourceError::BadUrl`] when `url` is not an absolute http(s) URL.
    pub fn with_client(client: Client, url: &str) -> Result<Self, SourceError> {
        Ok(Self {
            client,
            url: parse_url(url)?,
            cursor: None,
            seen: Seen::default(),
        })
    }

    /// Continue from a cursor kept by an earlier feed (see [`cursor`](Self::cursor)).
    #[must_use]
    pub fn resume_at(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The cursor the next poll sends; `None` before the first rows. Keep it to resume after a
    /// restart without reading the feed again.
    #[must_use]
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The URL the next poll requests.
    #[must_use]
    pub fn next_url(&self) -> Url {
        let mut url = self.url.clone();
        if let Some(cursor) = &self.cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        url
    }

    /// Read the rows after the cursor and move the cursor on.
    ///
    /// # Errors
    ///
    /// [`SourceError::Request`], [`SourceError::Status`] or [`SourceError::BadResponse`]; the
    /// cursor is then unchanged.
    pub async fn poll(&mut self) -> Result<Batch, SourceError> {
        let url = self.next_url();
        let origin = url.to_string();
        let body = get_text(&self.client, url).await?;
        let page = Page::parse(&body).map_err(|problem| SourceError::BadResponse {
            url: origin.clone(),
            problem,
        })?;
        let mut batch = Batch::default();
        for (list, rows) in [("events", page.events), ("resolutions", page.resolutions)] {
            for (index, value) in rows.into_iter().enumerate() {
                let position = Position::Item { list, index };
                self.seen
                    .take(&mut batch, &origin, position, row::parse_value(value));
            }
        }
        if let Some(next) = page.next_cursor {
            self.cursor = Some(next);
        }
        Ok(batch)
    }
}

impl Source for HttpFeed {
    async fn poll(&mut self) -> Result<Batch, SourceError> {
        HttpFeed::poll(self).await
    }
}

/// One response of the feed.
struct Page {
    events: Vec<Value>,
    resolutions: Vec<Value>,
    next_cursor: Option<String>,
}

impl Page {
    /// Check the response's outer shape; the rows are checked one by one later, so that one bad
    /// row does not cost the others.
    fn parse(body: &str) -> Result<Self, ResponseProblem> {
        let value = ResponseProblem::parse_json(body)?;
        let Value::Object(mut object) = value else {
            return Err(ResponseProblem::Shape {
                expected: "a JSON object",
                found: row::kind_of(&value),
            });
        };
        let mut list = |field: &'static str| match object.remove(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(ResponseProblem::Field {
                field,
                expected: "an array",
                found: row::kind_of(&other),
            }),
        };
        let events = list("events")?;
        let resolutions = list("resolutions")?;
        // Numbers are accepted as cursors too (a feed may count rows), and sent back as text.
        let next_cursor = match object.remove("next_cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(cursor)) => Some(cursor),
            Some(Value::Number(cursor)) => Some(cursor.to_string()),
            Some(other) => {
                return Err(ResponseProblem::Field {
                    field: "next_cursor",
                    expected: "a string",
                    found: row::kind_of(&other),
                });
            }
        };
        Ok(Self {
            events,
            resolutions,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use serde_json::json;

    use super::*;
    use crate::sources::RowProblem;
    use crate::test_support::serve;

    /// Serves the feed: pages by cursor; the first request after cursor "1" fails with 500,
    /// to show that a failed poll leaves the cursor.
    async fn feed(
        State(requests): State<Arc<AtomicUsize>>,
        Query(query): Query<HashMap<String, String>>,
    ) -> Response {
        let count = requests.fetch_add(1, Ordering::SeqCst);
        let page = match query.get("cursor").map(String::as_str) {
            None => json!({
                "events": [
                    {"id": "a", "title": "A?", "created_at": "2025-03-01T00:00:00Z"},
                    {"id": "b", "title": "B?"},
                    {"id": "c", "title": "C?", "created_at": 5, "outcome": 1, "resolved_at": 9},
                ],
                "next_cursor": "1",
            }),
            Some("1") if count == 1 => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "database on fire").into_response();
            }
            Some("1") => json!({
                "events": [{"id": "a", "title": "again", "created_at": 1}],
                "resolutions": [
                    {"event_id": "a", "outcome": 0, "resolved_at": "2025-03-05"},
                    {"event_id": "b", "outcome": 2, "resolved_at": 1},
                ],
                "next_cursor": 2,
            }),
            Some(_) => json!({"events": [], "resolutions": [], "next_cursor": null}),
        };
        axum::Json(page).into_response()
    }

    #[tokio::test]
    async fn reads_with_a_cursor_and_never_twice() {
        let router = Router::new()
            .route("/feed", get(feed))
            .with_state(Arc::new(AtomicUsize::new(0)));
        let base = serve(router).await;
        let mut feed = HttpFeed::new(&format!("{base}/feed")).unwrap();
        assert_eq!(feed.cursor(), None);

        let batch = feed.poll().await.unwrap();
        let ids: Vec<_> = batch.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(batch.resolutions.len(), 1);
        assert_eq!(batch.rejected.len(), 1);
        assert_eq!(
            batch.rejected[0].to_string(),
            format!("{base}/feed events[1]: missing field `created_at`")
        );
        assert_eq!(feed.cursor(), Some("1"));

        // The server fails: an error naming the status, and the cursor stays.
        let error = feed.poll().await.unwrap_err();
        assert!(
            matches!(&error, SourceError::Status { status: 500, body, .. } if body == "database on fire"),
            "{error}"
        );
        assert_eq!(feed.cursor(), Some("1"));

        // Asked again, the same page; an id the feed already delivered is reported.
        let batch = feed.poll().await.unwrap();
        assert!(batch.events.is_empty());
        assert_eq!(batch.resolutions.len(), 1);
        assert_eq!(batch.resolutions[0].event_id, "a");
        let problems: Vec<_> = batch.rejected.iter().map(|r| &r.problem).collect();
        assert!(matches!(problems[0], RowProblem::DuplicateId { .. }));
        assert!(matches!(
            problems[1],
            RowProblem::Field(crate::event::EventError::BadOutcome(_))
        ));
        assert_eq!(batch.rejected[1].position.to_string(), " resolutions[1]");
        assert_eq!(feed.cursor(), Some("2"));

        // Nothing new: the cursor stays where it was.
        assert!(feed.poll().await.unwrap().is_empty());
        assert_eq!(feed.cursor(), Some("2"));
        assert!(feed.next_url().as_str().ends_with("/feed?cursor=2"));

        // A feed resumed at a kept cursor goes on from there.
        let mut resumed = HttpFeed::new(&format!("{base}/feed"))
            .unwrap()
            .resume_at(Some("2".to_owned()));
        assert!(resumed.poll().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn garbage_is_an_error_and_keeps_the_cursor() {
        let router = Router::new()
            .route("/text", get(|| async { "<html>not json</html>" }))
            .route("/array", get(|| async { axum::Json(json!([1, 2])) }))
            .route(
                "/events",
                get(|| async { axum::Json(json!({"events": {"id": "a"}})) }),
            )
            .route(
                "/cursor",
                get(|| async { axum::Json(json!({"next_cursor": [1]})) }),
            );
        let base = serve(router).await;
        for (path, expected) in [
            ("/text", "invalid JSON"),
            ("/array", "expected a JSON object, got an array"),
            ("/events", "`events` must be an array"),
            ("/cursor", "`next_cursor` must be a string"),
        ] {
            let mut feed = HttpFeed::new(&format!("{base}{path}"))
                .unwrap()
                .resume_at(Some("7".to_owned()));
            let error = feed.poll().await.unwrap_err();
            assert!(
                matches!(&error, SourceError::BadResponse { .. }),
                "{path}: {error}"
            );
            let chain = format!("{:#}", anyhow::Error::new(error));
            assert!(chain.contains(expected), "{path}: {chain}");
            assert_eq!(feed.cursor(), Some("7"));
        }
        let mut missing = HttpFeed::new(&format!("{base}/absent")).unwrap();
        assert!(matches!(
            missing.poll().await,
            Err(SourceError::Status { status: 404, .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_and_bad_urls() {
        // Bind and drop a listener to get a port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let mut feed = HttpFeed::new(&format!("http://{address}/feed")).unwrap();
        assert!(matches!(
            feed.poll().await,
            Err(SourceError::Request { .. })
        ));
        assert_eq!(feed.cursor(), None);
        assert!(matches!(
            HttpFeed::new("not a url"),
            Err(SourceError::BadUrl { .. })
        ));
        assert!(matches!(
            HttpFeed::new("ftp://example.org/feed"),
            Err(SourceError::BadUrl { .. })
        ));
    }
}
