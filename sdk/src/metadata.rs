//! Reading an event's metadata, a JSON object in text form.

use crate::Event;

/// The event's metadata as a JSON object; empty when it is not an object.
pub fn object(event: &Event) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(&event.metadata) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// A numeric metadata field, when present and finite.
pub fn number(event: &Event, key: &str) -> Option<f64> {
    object(event)
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .filter(|value| value.is_finite())
}

/// The market (or crowd) probability recorded at the event's creation, the
/// `market_prob` field, when present and within [0, 1].
pub fn market_prob(event: &Event) -> Option<f64> {
    number(event, "market_prob").filter(|p| (0.0..=1.0).contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(metadata: &str) -> Event {
        Event {
            id: "e".into(),
            kind: "binary".into(),
            title: String::new(),
            description: String::new(),
            created_at: 0,
            cutoff: 0,
            metadata: metadata.into(),
        }
    }

    #[test]
    fn reads_market_prob() {
        assert_eq!(market_prob(&event(r#"{"market_prob": 0.42}"#)), Some(0.42));
        assert_eq!(market_prob(&event(r#"{"market_prob": 1.7}"#)), None);
        assert_eq!(market_prob(&event(r#"{"market_prob": "0.4"}"#)), None);
        assert_eq!(market_prob(&event("not json")), None);
        assert_eq!(market_prob(&event("[]")), None);
    }
}
