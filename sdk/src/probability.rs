//! Turning numbers and model text into probabilities.

/// Clamp a probability to [0, 1]; NaN becomes 0.5 (no information).
pub fn clamp(probability: f64) -> f64 {
    if probability.is_nan() {
        0.5
    } else {
        probability.clamp(0.0, 1.0)
    }
}

/// Find the probability an LLM stated in free text.
///
/// Accepts a percentage (`"73%"`, `"73 %"`) or a plain number in [0, 1]
/// (`"0.73"`, `".73"`, `"1"`). Where several appear, the last one after the
/// word "probability" wins, else the last one in the text: models tend to
/// reason first and answer last. Returns `None` when the text holds none.
pub fn parse(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let tail = lower
        .rfind("probability")
        .map_or(lower.as_str(), |at| &lower[at..]);
    last_probability(tail).or_else(|| last_probability(&lower))
}

fn last_probability(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        let glued_to_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.');
        if !starts_number || glued_to_word {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let Ok(value) = text[start..i].trim_end_matches('.').parse::<f64>() else {
            continue;
        };
        let rest = text[i..].trim_start();
        if rest.starts_with('%') {
            if (0.0..=100.0).contains(&value) {
                found = Some(value / 100.0);
            }
        } else if (0.0..=1.0).contains(&value) {
            found = Some(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_and_percentages() {
        assert_eq!(parse("0.73"), Some(0.73));
        assert_eq!(parse(".2"), Some(0.2));
        assert_eq!(parse("I'd say 65%."), Some(0.65));
        assert_eq!(parse("about 40 % likely"), Some(0.4));
        assert_eq!(parse("1"), Some(1.0));
    }

    #[test]
    fn answer_after_the_word_probability_wins() {
        let text = "In 2 of 3 similar cases (0.66) it happened. Final probability: 0.8";
        assert_eq!(parse(text), Some(0.8));
    }

    #[test]
    fn numbers_that_are_not_probabilities_are_ignored() {
        assert_eq!(parse("In 2024 there were 12 cases"), None);
        assert_eq!(parse("no idea"), None);
        assert_eq!(parse("150%"), None);
        assert_eq!(parse("gpt4.5 thinks 0.3"), Some(0.3));
    }

    #[test]
    fn clamp_handles_nan_and_range() {
        assert_eq!(clamp(f64::NAN), 0.5);
        assert_eq!(clamp(-3.0), 0.0);
        assert_eq!(clamp(7.0), 1.0);
        assert_eq!(clamp(0.25), 0.25);
    }
}
