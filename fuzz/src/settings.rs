//! `settings`: the QEMU firmware's command-line parser
//! (`boards/firmware/src/settings.rs`, compiled here unchanged through
//! `#[path]`: the firmware crate builds for Cortex-M targets).

#[allow(dead_code, rustdoc::broken_intra_doc_links)]
#[path = "../../boards/firmware/src/settings.rs"]
pub mod firmware;

use firmware::{prompt_ids, CmdlineError, Settings};

/// The harness: the command line over both sets of defaults.
pub fn run(data: &[u8]) -> bool {
    let mut ok = false;
    for base in [Settings::DEFAULT, Settings::REAL_BOARD] {
        match base.with_cmdline(data) {
            Ok(s) => {
                ok = true;
                let _ = s.rng_state();
                // What the firmware reads next: every id of a checked list parses.
                assert!(prompt_ids(s.prompt_ids).all(|t| t.is_some()) || s.prompt_ids.is_empty());
                // The prompt is the line's tail.
                assert!(s.prompt.is_empty() || data.ends_with(s.prompt.as_bytes()));
                let _ = microformer::sampler::Sampler::new(s.temperature, s.topp, s.rng_state());
            }
            Err(CmdlineError::NotKeyValue { at } | CmdlineError::UnknownKey { at }) => {
                assert!(at < data.len());
                assert!(core::str::from_utf8(&data[at..]).is_ok());
            }
            Err(_) => {}
        }
    }
    ok
}
