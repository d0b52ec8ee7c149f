//! The data plane's request journal: every request target (method, path and query exactly as
//! received, before any decoding), in order, bounded. Tests read it to prove that no request
//! through the adapter left the path its route intends; operators can ignore it.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Entries kept (the oldest are dropped first).
const CAPACITY: usize = 100_000;

/// One request as the emulator's data plane received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journaled {
    pub method: String,
    /// The raw request target: path and query, still percent-encoded.
    pub target: String,
}

#[derive(Default)]
pub struct RequestJournal {
    entries: Mutex<VecDeque<Journaled>>,
}

impl RequestJournal {
    pub fn record(&self, method: &str, target: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= CAPACITY {
            e.pop_front();
        }
        e.push_back(Journaled {
            method: method.to_string(),
            target: target.to_string(),
        });
    }

    /// Everything recorded so far, oldest first.
    pub fn entries(&self) -> Vec<Journaled> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().cloned().collect()
    }

    /// Forget everything recorded so far.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
