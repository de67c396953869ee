//! The per-run resource limiter: one memory budget over all of a
//! component's memories, remembering that it refused.

use wasmtime::ResourceLimiter;

/// Tables are capped too, so that a guest cannot grow host memory through
/// them instead of linear memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

pub(crate) struct RunLimiter {
    memory_limit: usize,
    memory_in_use: usize,
    pub(crate) memory_refused: bool,
}

impl RunLimiter {
    pub(crate) fn new(memory_limit: u64) -> Self {
        Self {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_in_use: 0,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_in_use.saturating_add(growth);
        if total > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
