//! Helpers shared by the crate's unit tests.

use axum::Router;
use chrono::{DateTime, Utc};

/// The instant an RFC 3339 text names.
pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .with_timezone(&Utc)
}

/// The instant `seconds` after the Unix epoch.
pub(crate) fn at_unix(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0)
        .unwrap_or_else(|| panic!("{seconds} s is out of chrono's range"))
}

/// Serves `router` on a free local port until the test ends; returns its base URL
/// (`http://127.0.0.1:PORT`).
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free local port");
    let address = listener.local_addr().expect("the bound address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serving") });
    format!("http://{address}")
}
