//! Captured stdout, stderr and `log` lines of one run, bounded in size.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What a run wrote, cut at the configured cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedLogs {
    /// The text kept, stdout, stderr and log lines interleaved in order
    /// (lossy UTF-8).
    pub text: String,
    /// Bytes written past the cap and dropped.
    pub dropped_bytes: u64,
}

impl CapturedLogs {
    /// Whether anything was dropped.
    pub fn truncated(&self) -> bool {
        self.dropped_bytes > 0
    }
}

#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

/// The shared sink of one run; cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct LogSink(Arc<Mutex<Buffer>>);

impl LogSink {
    pub(crate) fn new(limit: usize) -> Self {
        Self(Arc::new(Mutex::new(Buffer {
            bytes: Vec::new(),
            limit,
            dropped: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A poisoned lock only means another writer panicked mid-append;
        // the bytes are still a valid prefix.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn append(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        let room = buffer.limit.saturating_sub(buffer.bytes.len());
        let kept = room.min(bytes.len());
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += (bytes.len() - kept) as u64;
    }

    pub(crate) fn finish(&self) -> CapturedLogs {
        let buffer = self.lock();
        CapturedLogs {
            text: String::from_utf8_lossy(&buffer.bytes).into_owned(),
            dropped_bytes: buffer.dropped,
        }
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Writes never block and never fail: a flood is counted, not refused, so
/// that a chatty agent still gets to answer.
const WRITE_PERMIT: usize = 1 << 20;

impl OutputStream for LogSink {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
