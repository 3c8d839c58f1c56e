//! The project's own models (`models/<scheme>/`, trained by `train/`): each
//! converts with no flag but the output, and its f32 perplexity on the held-out
//! sample equals the trainer's own figure (its PyTorch forward pass, recorded in
//! `train.json`) to 4 significant digits — at the training length and below it;
//! the learned table refuses windows past its rows. Needs nothing outside the
//! repository.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_microformer");
const SCHEMES: [&str; 6] = ["nope", "sinusoidal", "learned", "rope", "alibi", "t5"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn convert(scheme: &str, out: &Path, extra: &[&str]) {
    let o = Command::new(BIN)
        .arg("convert")
        .arg(root().join("models").join(scheme))
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{scheme}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn perplexity(image: &Path, window: usize) -> serde_json::Value {
    let o = Command::new(BIN)
        .arg("perplexity")
        .arg(image)
        .arg("--text")
        .arg(root().join("models/text/sample.txt"))
        .args(["--window", &window.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn perplexity_equals_the_trainers() {
    let dir = std::env::temp_dir().join(format!("microformer-own-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for scheme in SCHEMES {
        let image = dir.join(format!("{scheme}.mfi"));
        convert(scheme, &image, &[]);
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root().join("models").join(scheme).join("train.json")).unwrap(),
        )
        .unwrap();
        let refs = record["reference"].as_array().unwrap();
        assert!(refs.len() >= 2, "{scheme}: reference windows");
        for r in refs {
            let window = r["window"].as_u64().unwrap() as usize;
            let got = perplexity(&image, window);
            assert_eq!(
                got["tokens"], r["tokens"],
                "{scheme} window {window}: tokenization"
            );
            assert_eq!(got["windows"], r["windows"], "{scheme} window {window}");
            let (g, w) = (
                got["perplexity"].as_f64().unwrap(),
                r["perplexity"].as_f64().unwrap(),
            );
            let rel = (g - w).abs() / w;
            println!("{scheme} window {window}: microformer {g:.8}, trainer {w:.8}, rel {rel:.1e}");
            // 4 significant digits: within half a unit of the 4th.
            assert!(rel < 5e-5, "{scheme} window {window}: {g} vs trainer {w}");
        }
    }
    // The learned table has 128 rows: a window of 512 is a usage error.
    let o = Command::new(BIN)
        .arg("perplexity")
        .arg(dir.join("learned.mfi"))
        .arg("--text")
        .arg(root().join("models/text/sample.txt"))
        .args(["--window", "512", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exceeds the image's context of 128"), "{err}");
    assert!(o.stdout.is_empty());
    // Every other scheme runs windows up to 1024 by default (a short text
    // makes one window).
    let rope = perplexity(&dir.join("rope.mfi"), 1024);
    assert!(rope["perplexity"].as_f64().unwrap().is_finite());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rope_scaling_extends_a_rope_model() {
    let dir = std::env::temp_dir().join(format!("microformer-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("rope.mfi");
    convert("rope", &plain, &["--context", "512"]);
    for rule in ["linear:4", "dynamic:4", "yarn:4"] {
        let scaled = dir.join(format!("{}.mfi", rule.replace(':', "_")));
        convert(
            "rope",
            &scaled,
            &["--context", "512", "--rope-scaling", rule],
        );
        let a = perplexity(&plain, 512)["perplexity"].as_f64().unwrap();
        let b = perplexity(&scaled, 512)["perplexity"].as_f64().unwrap();
        // A different rotation: a different (finite) figure.
        assert!(b.is_finite() && (a - b).abs() > 1e-3, "{rule}: {a} vs {b}");
    }
    let o = Command::new(BIN)
        .arg("convert")
        .arg(root().join("models/alibi"))
        .args(["-o"])
        .arg(dir.join("x.mfi"))
        .args(["--rope-scaling", "yarn:4"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
