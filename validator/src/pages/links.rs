//! Where the pages link to: the served routes, or the files of a static site.
//!
//! Owns the one rule that turns an id (a hotkey, an event id: any text, hostile included) into
//! a URL path segment and into a file name, so that the links a page writes and the files the
//! static site writes always agree.

use std::fmt::Write as _;

/// Bytes of a file name built from an id, at most; longer ids keep a prefix and a hash.
const MAX_NAME_BYTES: usize = 160;

/// How a page links to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Served by the validator: absolute paths (`/miners/{hotkey}`), pages refreshing
    /// themselves.
    Served,
    /// Files of a static site: relative paths from a page `depth` folders below the site's
    /// root, no refresh.
    Static {
        /// 0 for `index.html`, 1 for `miners/*.html`.
        depth: usize,
    },
}

impl Links {
    /// The prefix that leads from the page to the site's root.
    fn up(self) -> String {
        match self {
            Self::Served => "/".to_owned(),
            Self::Static { depth } => "../".repeat(depth),
        }
    }

    /// The leaderboard.
    #[must_use]
    pub fn home(self) -> String {
        match self {
            Self::Served => "/".to_owned(),
            Self::Static { .. } => format!("{}index.html", self.up()),
        }
    }

    /// The operator page.
    #[must_use]
    pub fn operator(self) -> String {
        match self {
            Self::Served => "/operator".to_owned(),
            Self::Static { .. } => format!("{}operator.html", self.up()),
        }
    }

    /// The page of miner `hotkey`.
    #[must_use]
    pub fn miner(self, hotkey: &str) -> String {
        match self {
            Self::Served => format!("/miners/{}", percent_encode(hotkey)),
            Self::Static { .. } => format!("{}miners/{}.html", self.up(), file_stem(hotkey)),
        }
    }

    /// The page of event `id`.
    #[must_use]
    pub fn event(self, id: &str) -> String {
        match self {
            Self::Served => format!("/events/{}", percent_encode(id)),
            Self::Static { .. } => format!("{}events/{}.html", self.up(), file_stem(id)),
        }
    }

    /// Whether the page refreshes itself (served pages only: a file on disk does not change).
    #[must_use]
    pub fn refresh(self) -> bool {
        self == Self::Served
    }
}

/// `text` as one URL path segment: every byte but the unreserved ones percent-encoded.
#[must_use]
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// The file name (without `.html`) of the page of `id`: letters, digits and `-` kept, every
/// other byte written `_XX` (hex), so that distinct ids get distinct names made only of
/// `[A-Za-z0-9_-]`: never `.`, `..` nor a `/`, and the same in a relative link as on disk. An
/// id whose name would pass [`MAX_NAME_BYTES`] keeps a prefix and gains a hash of the whole id.
#[must_use]
pub fn file_stem(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            name.push(char::from(byte));
        } else {
            let _ = write!(name, "_{byte:02X}");
        }
    }
    if name.is_empty() {
        return "_".to_owned();
    }
    if name.len() > MAX_NAME_BYTES {
        // Only ASCII was written: any byte index is a char boundary.
        name.truncate(MAX_NAME_BYTES - 34);
        let _ = write!(name, "~{:016x}{:016x}", fnv1a(id, 0), fnv1a(id, 1));
    }
    name
}

/// FNV-1a, 64 bits, of `text` after a `seed` byte: two seeds give a 128-bit name suffix.
fn fnv1a(text: &str, seed: u8) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(seed).chain(text.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe_and_distinct() {
        for hostile in [
            "..",
            "../etc/passwd",
            "a/b",
            ".",
            "x.html",
            "<script>",
            "é",
            "a_2F",
        ] {
            let stem = file_stem(hostile);
            assert!(
                stem.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{stem}"
            );
        }
        assert_eq!(file_stem("a/b"), "a_2Fb");
        assert_ne!(file_stem("a/b"), file_stem("a_2Fb"));
        assert_eq!(file_stem(""), "_");
        let long = "x".repeat(10_000);
        let stem = file_stem(&long);
        assert!(stem.len() <= MAX_NAME_BYTES);
        assert_ne!(stem, file_stem(&"x".repeat(10_001)));
    }

    #[test]
    fn links_agree_with_the_routes_and_the_files() {
        assert_eq!(Links::Served.miner("a b/c"), "/miners/a%20b%2Fc");
        assert_eq!(Links::Served.event("poly/3"), "/events/poly%2F3");
        assert_eq!(
            Links::Static { depth: 1 }.event("poly/3"),
            "../events/poly_2F3.html"
        );
        assert_eq!(Links::Static { depth: 0 }.home(), "index.html");
        assert!(!Links::Static { depth: 0 }.refresh());
    }
}
