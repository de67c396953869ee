//! What a gateway service may be called. The name an agent passes to `call()`
//! becomes a path segment of the gateway's URL and is kept in the run's
//! record, so the host refuses anything but a short name of a fixed alphabet
//! before it does either; the gateway holds its configured names to the same
//! rule.

/// The longest service name, in bytes.
pub const MAX_SERVICE_NAME_LEN: usize = 64;

/// Why a service name is refused. The message never repeats the name itself:
/// it may be megabytes long or made to look like something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceNameError {
    /// The name is empty.
    #[error("the service name is empty")]
    Empty,
    /// The name is longer than [`MAX_SERVICE_NAME_LEN`].
    #[error("the service name is {len} bytes, over the {MAX_SERVICE_NAME_LEN} byte limit")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name has a character outside the alphabet, or does not start
    /// with a letter or digit.
    #[error(
        "the service name must be lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit"
    )]
    BadCharacter,
}

/// Check that `name` is a valid service name: 1 to [`MAX_SERVICE_NAME_LEN`]
/// bytes of `a-z`, `0-9`, `-` and `_`, the first a letter or digit. Such a
/// name is one URL path segment as it stands (no `/`, `.`, `%` or space), so
/// it can never walk to another route.
///
/// # Errors
///
/// [`ServiceNameError`] saying which rule the name breaks.
pub fn check_service_name(name: &str) -> Result<(), ServiceNameError> {
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return Err(ServiceNameError::Empty),
        Some(first) if !(first.is_ascii_lowercase() || first.is_ascii_digit()) => {
            return Err(ServiceNameError::BadCharacter);
        }
        Some(_) => {}
    }
    if bytes.len() > MAX_SERVICE_NAME_LEN {
        return Err(ServiceNameError::TooLong { len: bytes.len() });
    }
    if bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
    {
        Ok(())
    } else {
        Err(ServiceNameError::BadCharacter)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_SERVICE_NAME_LEN, ServiceNameError, check_service_name};

    #[test]
    fn names_of_the_alphabet_pass() {
        for name in [
            "chat",
            "search",
            "desearch",
            "my-llm_2",
            "0day",
            &"a".repeat(64),
        ] {
            assert_eq!(check_service_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(check_service_name(""), Err(ServiceNameError::Empty));
        assert_eq!(
            check_service_name(&"a".repeat(MAX_SERVICE_NAME_LEN + 1)),
            Err(ServiceNameError::TooLong { len: 65 })
        );
        for name in [
            "../chat",
            "%2e%2e/chat",
            "echo/../../chat",
            "..",
            ".",
            "Chat",
            "chat ",
            "-chat",
            "_chat",
            "chat?x=1",
            "chat#x",
            "ch\u{e4}t",
            "chat\0",
            "a.b",
        ] {
            assert_eq!(
                check_service_name(name),
                Err(ServiceNameError::BadCharacter),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_huge_name_is_refused_by_length_without_scanning_it_all() {
        let huge = "a".repeat(4 << 20);
        assert_eq!(
            check_service_name(&huge),
            Err(ServiceNameError::TooLong { len: 4 << 20 })
        );
    }
}
