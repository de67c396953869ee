//! The cache key: which requests count as the same.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Top-level body fields left out of the cache key: they identify the caller
/// or the transport, not the question (`user`, `stream_options`,
/// `request_id`, `metadata`).
pub const VOLATILE_FIELDS: [&str; 4] = ["user", "stream_options", "request_id", "metadata"];

/// Prefix of the hashed key material (changing the key scheme changes it).
const KEY_DOMAIN: &[u8] = b"sooth-gateway-cache-v1\n";

/// The cache key of a request: lower-case hex SHA-256 over the service
/// name, the route and [`canonical_body`]`(body)`.
///
/// The hashed bytes are `"sooth-gateway-cache-v1\n"`, then the service and
/// the route each as an 8-byte big-endian length and its UTF-8 bytes, then
/// the canonical body (so no choice of names can make two requests collide).
pub fn cache_key(service: &str, route: &str, body: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(KEY_DOMAIN);
    for part in [service, route] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    write_canonical(&mut hasher, body, true);
    hex::encode(hasher.finalize())
}

/// The body as the cache key sees it: canonical JSON (object keys sorted by
/// their UTF-8 bytes at every level, no whitespace, strings escaped as
/// `serde_json` does, numbers as `serde_json` prints them) with the
/// [`VOLATILE_FIELDS`] of a top-level object left out.
///
/// Nesting depth is bounded by the JSON parser (`serde_json` refuses more
/// than 128 levels), so the recursion is too.
pub fn canonical_body(body: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, body, true);
    out
}

/// Where canonical JSON goes: a string, or straight into the hash.
trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, s: &str) {
        self.update(s.as_bytes());
    }
}

fn write_canonical(out: &mut impl Sink, value: &Value, top: bool) {
    match value {
        Value::Null => out.put("null"),
        Value::Bool(b) => out.put(if *b { "true" } else { "false" }),
        Value::Number(n) => out.put(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.put("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_canonical(out, item, false);
            }
            out.put("]");
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(k, _)| !(top && VOLATILE_FIELDS.contains(&k.as_str())))
                .collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.put("{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_string(out, k);
                out.put(":");
                write_canonical(out, v, false);
            }
            out.put("}");
        }
    }
}

/// A JSON string literal, escaped exactly as `serde_json` does.
fn write_string(out: &mut impl Sink, s: &str) {
    out.put("\"");
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0c}' => "\\f",
            c if c < ' ' => {
                out.put(&s[start..i]);
                out.put(&format!("\\u{:04x}", u32::from(c)));
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put(&s[start..i]);
        out.put(escaped);
        start = i + 1;
    }
    out.put(&s[start..]);
    out.put("\"");
}
