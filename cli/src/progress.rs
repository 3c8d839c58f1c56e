//! A minimal progress bar on stderr, drawn only when stderr is a terminal.
//!
//! `[#########...........]  12/40  model.layers.3.mlp.up_proj.weight`, redrawn in
//! place with `\r`; cleared when done. When stderr is not a terminal (a pipe, a
//! log file, a test) nothing is drawn, so logs stay clean.

use std::io::{IsTerminal, Write};

/// Width of the bar in characters.
const WIDTH: usize = 24;

/// A per-item progress bar.
pub struct Progress {
    total: usize,
    done: usize,
    enabled: bool,
}

impl Progress {
    /// A bar for `total` items (drawn only on a terminal).
    pub fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// A bar that never draws.
    pub fn hidden(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            enabled: false,
        }
    }

    /// Marks one more item done; `label` names it.
    pub fn tick(&mut self, label: &str) {
        self.done = (self.done + 1).min(self.total);
        if !self.enabled {
            return;
        }
        let filled = (WIDTH * self.done).checked_div(self.total).unwrap_or(WIDTH);
        let label: String = label.chars().take(48).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}{}] {:>4}/{} {label}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.done,
            self.total
        );
        let _ = err.flush();
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
