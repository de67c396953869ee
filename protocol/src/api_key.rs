//! What an upstream API key may look like, wherever one is taken: the
//! gateway's `sooth proxy link-key` and a validator that takes a miner's own
//! key over its API hold keys to the same rule. A key must be sent upstream
//! in an HTTP header, so it is visible ASCII only, and it is bounded so that
//! what holds it stays small.
//!
//! The rule's errors describe the rule broken, never the text given: a key
//! must not reach a log or an error message.

/// The longest API key accepted, in bytes.
pub const MAX_API_KEY_LEN: usize = 4096;

/// Why a text is not an API key. No variant carries the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Nothing but whitespace.
    #[error("the API key is empty")]
    Empty,
    /// Longer than [`MAX_API_KEY_LEN`] once trimmed.
    #[error("the API key is longer than {MAX_API_KEY_LEN} bytes")]
    TooLong,
    /// A character that is not visible ASCII (a space inside, a control
    /// character, anything beyond ASCII).
    #[error("an API key must be visible ASCII characters only (no spaces inside)")]
    BadCharacter,
}

/// The key in `text` as typed or piped, without surrounding whitespace (a
/// trailing newline, say): 1 to [`MAX_API_KEY_LEN`] bytes of visible ASCII.
///
/// # Errors
///
/// [`ApiKeyError`] saying which rule the text breaks (never the text).
pub fn check_api_key(text: &str) -> Result<&str, ApiKeyError> {
    let key = text.trim();
    if key.is_empty() {
        return Err(ApiKeyError::Empty);
    }
    if key.len() > MAX_API_KEY_LEN {
        return Err(ApiKeyError::TooLong);
    }
    if key.bytes().all(|byte| byte.is_ascii_graphic()) {
        Ok(key)
    } else {
        Err(ApiKeyError::BadCharacter)
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiKeyError, MAX_API_KEY_LEN, check_api_key};

    #[test]
    fn keys_are_trimmed_and_checked() {
        assert_eq!(check_api_key("  sk-abc123\n"), Ok("sk-abc123"));
        assert_eq!(
            check_api_key(&"k".repeat(MAX_API_KEY_LEN)).map(str::len),
            Ok(MAX_API_KEY_LEN)
        );
        assert_eq!(check_api_key(""), Err(ApiKeyError::Empty));
        assert_eq!(check_api_key(" \n\t"), Err(ApiKeyError::Empty));
        assert_eq!(
            check_api_key(&"k".repeat(MAX_API_KEY_LEN + 1)),
            Err(ApiKeyError::TooLong)
        );
        for bad in ["has space", "tab\there", "\u{e9}-accent", "nul\0"] {
            assert_eq!(
                check_api_key(bad),
                Err(ApiKeyError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_never_repeat_the_key() {
        for bad in ["sk secret", &"sk-secret".repeat(1000)] {
            let error = check_api_key(bad).expect_err("refused");
            assert!(!error.to_string().contains("secret"), "{error}");
            assert!(!format!("{error:?}").contains("secret"));
        }
    }
}
