//! `cargo xtask families`, a stage of `cargo xtask test`: Hugging Face fixtures of every
//! family the converter reads (ALiBi, learned, sinusoidal, partial-RoPE positions, …),
//! converted and run greedy on the host and on the emulated Cortex-M4F (the demo's path:
//! the image has no tokenizer, so the firmware prints token ids), the ids compared with each
//! other and with transformers'.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::firmware::{build_firmware, convert, host_ids, parse_printed_ids, Kv, Quant, Settings};
use crate::install::ensure_tools;
use crate::qemu::run_qemu;
use crate::qemu_boards::M4F;
use crate::util::{root, secs, work_dir};

/// A Hugging Face fixture the families stage runs on the device.
struct Family {
    /// Directory under `tests/fixtures/hf` (the public set copied from
    /// `../shared/fixtures/hf`, and the project's own).
    dir: &'static str,
    /// What it exercises.
    what: &'static str,
}

/// Every family the converter reads, one fixture each: one ALiBi model and one
/// learned-position model (what the issue asks for), and every other position hook and
/// block shape.
const FAMILIES: &[Family] = &[
    Family {
        dir: "bloom-alibi",
        what: "BLOOM, ALiBi",
    },
    Family {
        dir: "gpt2-learned",
        what: "GPT-2, learned positions",
    },
    Family {
        dir: "xglm-sinusoidal",
        what: "XGLM, sinusoidal",
    },
    Family {
        dir: "gptneox-partial-rope",
        what: "GPT-NeoX, partial RoPE",
    },
    Family {
        dir: "llama-rope-default",
        what: "Llama, RoPE",
    },
    Family {
        dir: "gptj-interleaved-rope",
        what: "GPT-J, interleaved RoPE",
    },
    Family {
        dir: "mpt-alibi-6h",
        what: "MPT, ALiBi, 6 heads",
    },
    Family {
        dir: "phi-partial-rope",
        what: "Phi, partial RoPE",
    },
];

/// The Hugging Face fixtures of the repository (`tests/fixtures/hf`).
fn hf_fixtures_dir() -> PathBuf {
    root().join("tests").join("fixtures").join("hf")
}

/// A fixture's `reference.json` (the fields the stage reads): transformers' greedy
/// continuation of a prompt.
#[derive(Debug, Deserialize)]
struct Reference {
    /// The prompt, as token ids.
    greedy_prompt: Vec<u32>,
    /// The ids transformers generated after it, greedy.
    greedy: Vec<u32>,
}

/// The settings of a greedy run of `new_tokens` tokens after `prompt` (ids), and how many
/// ids it prints before them: run.c emits the prompt's tokens after the first, then the
/// generated ones, one per position.
fn greedy_settings(prompt: &[u32], new_tokens: usize) -> (Settings, usize) {
    let echoed = prompt.len().saturating_sub(1);
    let s = Settings {
        prompt_ids: prompt.to_vec(),
        steps: (echoed + new_tokens) as u32,
        temperature: 0.0,
        ..Settings::default()
    };
    (s, echoed)
}

/// Where two id lists first differ (the shorter one's length when one is a prefix).
fn first_difference(a: &[u32], b: &[u32]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// One fixture: convert, run greedy on the host and on the emulated Cortex-M4F, compare
/// the ids with each other and with transformers' `greedy`. Returns the summary line.
fn family(f: &Family) -> Result<String, String> {
    let dir = hf_fixtures_dir().join(f.dir);
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let reference: Reference =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let (prompt, want) = (reference.greedy_prompt, reference.greedy);
    if prompt.is_empty() || want.is_empty() {
        return Err("reference.json: empty greedy_prompt or greedy".into());
    }
    let (settings, echoed) = greedy_settings(&prompt, want.len());
    let image = work_dir()?.join(format!("families-{}.mfi", f.dir));
    convert(&dir, None, Quant::F32, &image)?;
    let host = host_ids(&image, &settings)?;
    let elf = build_firmware(M4F, &image, Kv::F32)?;
    let run = run_qemu(M4F, &elf, &settings.cmdline(), false, false)?;
    let device = parse_printed_ids(&run.text).map_err(|e| {
        format!(
            "the device did not print token ids ({e}): {:?}",
            String::from_utf8_lossy(&run.text)
        )
    })?;
    let show = |ids: &[u32]| {
        let v: Vec<String> = ids.iter().map(u32::to_string).collect();
        v.join(" ")
    };
    eprintln!("xtask: {} host:   {}", f.dir, show(&host));
    eprintln!("xtask: {} device: {}", f.dir, show(&device));
    if device != host {
        return Err(format!(
            "device and host differ at id {} (device {} ids, host {} ids)",
            first_difference(&device, &host),
            device.len(),
            host.len()
        ));
    }
    if host.get(..echoed) != prompt.get(1..) {
        return Err("the printed ids do not start with the prompt's (after the first)".into());
    }
    let generated = &host[echoed..];
    if generated != want.as_slice() {
        return Err(format!(
            "{} generated ids, transformers' greedy has {}; first difference at {}",
            generated.len(),
            want.len(),
            first_difference(generated, &want)
        ));
    }
    Ok(format!(
        "{} ids, device = host = transformers' greedy ({} tokens after an {}-token prompt)",
        host.len(),
        want.len(),
        prompt.len()
    ))
}

/// The families stage of `cargo xtask test`: for each fixture of [`FAMILIES`] (ALiBi,
/// learned, sinusoidal and partial-RoPE positions), `microformer convert` of the Hugging
/// Face directory, then greedy generation from `reference.json`'s `greedy_prompt` (as
/// prompt ids) for as many tokens as its `greedy` holds, on the host (`microformer run
/// --ids`) and on the emulated Cortex-M4F (the demo's path: the firmware prints ids, the
/// image having no tokenizer). The ids must be identical, and the continuation equal to
/// transformers' `greedy`. One line per model, then `families: N passed, M failed`.
/// Returns its duration.
pub fn families_tests() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: === families stage ===");
    ensure_tools()?;
    let mut results = Vec::new();
    for f in FAMILIES {
        eprintln!("xtask: --- {} ({}) ---", f.dir, f.what);
        let t = Instant::now();
        results.push((f, family(f), t.elapsed()));
    }
    let mut failed = Vec::new();
    for (f, r, t) in &results {
        match r {
            Ok(line) => eprintln!(
                "families: {:<22} {:<26} ok: {line} ({})",
                f.dir,
                f.what,
                secs(*t)
            ),
            Err(e) => {
                eprintln!(
                    "families: {:<22} {:<26} FAILED: {e} ({})",
                    f.dir,
                    f.what,
                    secs(*t)
                );
                failed.push(f.dir);
            }
        }
    }
    eprintln!(
        "families: {} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        eprintln!("xtask: families stage passed in {}", secs(start.elapsed()));
        Ok(start.elapsed())
    } else {
        Err(format!(
            "device generation differs for {}",
            failed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ids_reach_the_command_line() {
        let (s, echoed) = greedy_settings(&[86, 33, 42], 24);
        assert_eq!((s.steps, echoed), (26, 2));
        assert_eq!(
            s.cmdline(),
            "steps=26 temperature=0 topp=0.9 seed=0 prompt_ids=86,33,42"
        );
    }

    #[test]
    fn reads_a_reference() {
        let r: Reference = serde_json::from_str(
            r#"{"config": {"n_layer": 2}, "greedy_prompt": [86, 33], "greedy": [99, 125]}"#,
        )
        .unwrap();
        assert_eq!((r.greedy_prompt, r.greedy), (vec![86, 33], vec![99, 125]));
        assert!(
            serde_json::from_str::<Reference>(r#"{"greedy_prompt": [1.5], "greedy": []}"#).is_err()
        );
        assert_eq!(first_difference(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(first_difference(&[1, 2], &[1, 2, 4]), 2);
    }

    #[test]
    fn every_fixture_is_there() {
        for f in FAMILIES {
            let dir = hf_fixtures_dir().join(f.dir);
            assert!(dir.join("reference.json").is_file(), "{}", dir.display());
        }
    }
}
