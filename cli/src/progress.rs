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
    enabled: bool,
}

impl Progress {
    /// A bar (drawn only on a terminal).
    pub fn new() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `done` of `total` items done; `label` names the last one.
    pub fn tick(&mut self, done: usize, total: usize, label: &str) {
        if !self.enabled {
            return;
        }
        let done = done.min(total);
        let filled = (WIDTH * done).checked_div(total).unwrap_or(WIDTH);
        let label: String = label.chars().take(48).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}{}] {:>4}/{} {label}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            done,
            total
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
