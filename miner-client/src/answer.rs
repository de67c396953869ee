//! Reading a validator's answer: the documented JSON on success, a JSON error otherwise,
//! anything else [`ClientError::Unexpected`]. Answers are read up to [`MAX_ANSWER_BYTES`].

use reqwest::{Response, Url};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::views::ErrorBody;

/// The largest answer read; a longer one is [`ClientError::Unexpected`].
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// How much of an unexpected body an error quotes, in characters.
const BODY_PREFIX_CHARS: usize = 200;

/// `response` read as a `T` when its status is a success, as [`ClientError::Api`] when it is
/// a JSON error.
pub(crate) async fn read_answer<T: DeserializeOwned>(
    url: &Url,
    mut response: Response,
) -> Result<T, ClientError> {
    let status = response.status();
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|source| ClientError::Http {
            url: url.to_string(),
            source,
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            body.extend_from_slice(&chunk[..MAX_ANSWER_BYTES.saturating_sub(body.len())]);
            return Err(unexpected(status.as_u16(), &body));
        }
        body.extend_from_slice(&chunk);
    }
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|_| unexpected(status.as_u16(), &body));
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(error) => Err(ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            next_allowed_at: error.next_allowed_at,
            retry_at: error.retry_at,
        }),
        Err(_) => Err(unexpected(status.as_u16(), &body)),
    }
}

fn unexpected(status: u16, body: &[u8]) -> ClientError {
    ClientError::Unexpected {
        status,
        body_prefix: String::from_utf8_lossy(body)
            .chars()
            .take(BODY_PREFIX_CHARS)
            .collect(),
    }
}
