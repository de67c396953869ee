//! [`ServiceKey`]: a miner's own upstream API key, in clear, in memory only.

use std::fmt;

use sooth_protocol::{ApiKeyError, check_api_key};

/// A miner's upstream API key. Its `Debug` output is redacted and it has no `Display`: the
/// text is reachable only through [`expose`](Self::expose), to seal it or hand it to the
/// gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceKey(String);

impl ServiceKey {
    /// A key from text as the miner sent it, without surrounding whitespace, held to the
    /// gateway's rule (`sooth_protocol::check_api_key`: 1 to 4096 visible ASCII characters).
    ///
    /// # Errors
    ///
    /// [`ApiKeyError`] naming the rule broken (never the text).
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        check_api_key(text).map(|key| Self(key.to_owned()))
    }

    /// The key's text.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServiceKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ServiceKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceKey;

    #[test]
    fn a_key_is_trimmed_checked_and_never_printed() {
        let key = ServiceKey::parse(" sk-very-secret\n").expect("a key");
        assert_eq!(key.expose(), "sk-very-secret");
        assert_eq!(format!("{key:?}"), "ServiceKey(<redacted>)");
        assert!(!format!("{:?}", Some(&key)).contains("secret"));
        assert!(ServiceKey::parse("sk very secret").is_err());
    }
}
