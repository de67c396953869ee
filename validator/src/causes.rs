//! One line of text from an error and its causes, for the texts the validator keeps rather
//! than returns: a skipped row of a backtest, the log of a run that crashed.

/// `error` and each of its causes, joined by `": "`.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
