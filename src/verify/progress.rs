//! Progress over repositories on stderr: a redrawn bar on a terminal, a plain line every tenth
//! of the way (and at the end) otherwise, nothing when switched off.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Progress {
    tty: bool,
    enabled: bool,
    total: AtomicUsize,
    done: AtomicUsize,
}

impl Progress {
    /// Progress on stderr (a bar if stderr is a terminal).
    pub fn stderr(enabled: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            enabled,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    pub fn start(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        if self.enabled && !self.tty {
            eprintln!("verify: reading {total} repositories from the source");
        }
    }

    pub fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed).max(done);
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 30;
            let filled = done * width / total;
            let _ = write!(
                err,
                "\r[{}{}] {done}/{total} repositories",
                "#".repeat(filled),
                ".".repeat(width - filled)
            );
            if done == total {
                let _ = writeln!(err);
            }
        } else {
            let step = (total / 10).max(1);
            if done % step == 0 || done == total {
                let _ = writeln!(err, "verify: {done}/{total} repositories read");
            }
        }
    }
}
