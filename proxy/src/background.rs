//! The guard of the gateway's background maintenance tasks (the cache's purge, the linked
//! keys' reload, the ledger's journal).

/// Aborts a background maintenance task when dropped (its owner keeps it in an `Arc`, so the
/// task stops when the last clone goes).
#[derive(Debug)]
pub(crate) struct BackgroundTask(pub(crate) tokio::task::AbortHandle);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
