//! The answers kept in memory in front of the file.

use std::sync::Arc;

use super::CachedResponse;

/// Answers kept in memory, weighed by their size in bytes.
pub(super) type MemoryFront = quick_cache::sync::Cache<String, Arc<FrontEntry>, FrontWeight>;

/// An answer in memory and when it expires (Unix milliseconds).
#[derive(Debug)]
pub(super) struct FrontEntry {
    pub(super) response: CachedResponse,
    pub(super) expires_at_ms: i64,
}

/// Weighs an answer in memory by its bytes, plus a little for the entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrontWeight;

impl quick_cache::Weighter<String, Arc<FrontEntry>> for FrontWeight {
    fn weight(&self, key: &String, entry: &Arc<FrontEntry>) -> u64 {
        (key.len() + entry.response.body.len() + entry.response.content_type.len() + 64) as u64
    }
}

pub(super) fn memory_front(bytes: u64) -> Arc<MemoryFront> {
    // quick_cache sizes its tables from an estimate of the entry count;
    // answers of a few KiB are typical.
    let estimated_entries = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(16);
    Arc::new(MemoryFront::with_weighter(
        estimated_entries,
        bytes,
        FrontWeight,
    ))
}
