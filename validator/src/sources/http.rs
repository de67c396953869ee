//! What the HTTP sources share: their client, the check of a source's URL, and one GET whose
//! answer must be a success with a body.

use std::time::Duration;

use reqwest::{Client, Url};

use super::{SourceError, UrlProblem, excerpt};

/// How long one request may take; a source that hangs must not stall the daemon's polling.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error response's body goes into the error.
const BODY_EXCERPT_CHARS: usize = 200;

/// An HTTP client with the sources' request timeout; `url` names the source in the error.
pub(super) fn client(url: &str) -> Result<Client, SourceError> {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|source| SourceError::Request {
            url: url.to_owned(),
            source,
        })
}

/// `url` parsed, when it is an absolute http(s) URL.
pub(super) fn parse_url(url: &str) -> Result<Url, SourceError> {
    let bad = |problem| SourceError::BadUrl {
        url: url.to_owned(),
        problem,
    };
    let parsed = Url::parse(url).map_err(|error| bad(UrlProblem::Parse(error)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(UrlProblem::NotHttp));
    }
    Ok(parsed)
}

/// GETs `url` and returns its body, when the status is a success.
pub(super) async fn get_text(client: &Client, url: Url) -> Result<String, SourceError> {
    let origin = url.to_string();
    let failed = |source| SourceError::Request {
        url: origin.clone(),
        source,
    };
    let response = client.get(url).send().await.map_err(failed)?;
    let status = response.status();
    let body = response.text().await.map_err(failed)?;
    if !status.is_success() {
        return Err(SourceError::Status {
            url: origin,
            status: status.as_u16(),
            body: excerpt(&body, BODY_EXCERPT_CHARS),
        });
    }
    Ok(body)
}
