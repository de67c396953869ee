//! The state the handlers and the [`FakeUpstream`](crate::FakeUpstream)
//! handle share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName};

use crate::script::Script;
use crate::stats::{RECORDED_CAPACITY, RecordedRequest};
use crate::{FakeStats, FakeUpstreamConfig};

/// State shared by the handlers and the [`FakeUpstream`] handle. Locks are
/// held only briefly, never across an await.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: FakeUpstreamConfig,
    pub(crate) generic_auth_header: Option<HeaderName>,
    pub(crate) latency_nanos: AtomicU64,
    pub(crate) next_id: AtomicU64,
    pub(crate) script: Mutex<Script>,
    pub(crate) stats: Mutex<FakeStats>,
    pub(crate) recorded: Mutex<VecDeque<RecordedRequest>>,
}

impl Shared {
    pub(crate) fn new(config: FakeUpstreamConfig) -> Self {
        let generic_auth_header =
            HeaderName::from_bytes(config.generic_auth_header.as_bytes()).ok();
        if generic_auth_header.is_none() {
            tracing::warn!(
                header = %config.generic_auth_header,
                "fake upstream: invalid generic auth header name; the generic route will answer 401"
            );
        }
        Self {
            latency_nanos: AtomicU64::new(duration_nanos(config.latency)),
            config,
            generic_auth_header,
            next_id: AtomicU64::new(1),
            script: Mutex::new(Script::default()),
            stats: Mutex::new(FakeStats::default()),
            recorded: Mutex::new(VecDeque::with_capacity(RECORDED_CAPACITY)),
        }
    }

    /// The API key a request presents, read the way its route expects it.
    pub(crate) fn presented_key<'h>(
        &self,
        route: Route,
        headers: &'h HeaderMap,
    ) -> Option<&'h str> {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        match route {
            Route::Chat => text(&AUTHORIZATION)?.strip_prefix("Bearer "),
            Route::Search => text(&AUTHORIZATION),
            Route::Generic => text(self.generic_auth_header.as_ref()?),
        }
    }

    /// Whether a request to `route` presents `own` (the route's key) or one
    /// of the extra keys.
    pub(crate) fn authorized(&self, route: Route, headers: &HeaderMap, own: &str) -> bool {
        self.presented_key(route, headers)
            .is_some_and(|key| key == own || self.config.extra_api_keys.iter().any(|k| k == key))
    }

    /// A fresh id for an answer.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The routes that count and record their requests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    Chat,
    Search,
    Generic,
}

/// Locks `mutex`; a poisoned lock is still consistent (every change is one
/// step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `d` in nanoseconds, saturated.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
