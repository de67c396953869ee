//! Wake-ups from the run queue's notifications (PostgreSQL's `LISTEN`): what lets an idle worker
//! claim, and a scheduler waiting for its workers go on, as soon as something happened rather
//! than at their next poll. Without a listener (SQLite, or one that failed) they only poll.

use crate::causes::with_causes;
use crate::store::{QueueListener, StoreError};

/// A listener of one kind of notification, or none.
#[derive(Debug)]
pub(crate) struct Wakeups {
    listener: Option<QueueListener>,
    what: &'static str,
}

impl Wakeups {
    /// Wake-ups from `opened`, a listener of `what` as the store opened it; when it could not be
    /// opened, none (and a warning says so).
    pub(crate) fn from_opened(
        opened: Result<Option<QueueListener>, StoreError>,
        what: &'static str,
    ) -> Self {
        let listener = opened.unwrap_or_else(|error| {
            tracing::warn!(error = %with_causes(&error), "cannot listen for {what}; looking every poll");
            None
        });
        Self { listener, what }
    }

    /// None: polling only, until a listener is opened.
    pub(crate) fn none(what: &'static str) -> Self {
        Self {
            listener: None,
            what,
        }
    }

    /// Whether a listener is open.
    pub(crate) fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Completes when a notification came; never without a listener. A listener that fails is
    /// dropped (with a warning), and the caller's poll goes on alone.
    pub(crate) async fn next(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            return std::future::pending().await;
        };
        if let Err(error) = listener.heard().await {
            tracing::warn!(error = %with_causes(&error),
                           "lost the notifications of {}; looking every poll", self.what);
            self.listener = None;
        }
    }
}
