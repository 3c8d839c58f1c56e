//! The committed seeds reach what each harness is for: models that open and step,
//! checkpoints and Hugging Face directories that convert, tokenizers that load, command
//! lines that parse (a seed set that stops at the first check would fuzz nothing).

use std::path::Path;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

/// How many of `target`'s seeds pass the harness whole (`run` returns true).
fn passing(target: &str, run: fn(&[u8]) -> bool) -> (usize, usize) {
    let s = seeds(target);
    (s.iter().filter(|d| run(d)).count(), s.len())
}

#[test]
fn seeds_go_the_whole_way() {
    for (target, run, at_least) in [
        (
            "image",
            microformer_fuzz::image::run as fn(&[u8]) -> bool,
            10,
        ),
        ("llama2c", microformer_fuzz::llama2c::run, 3),
        ("hf", microformer_fuzz::hf::run, 10),
        ("tokenizer", microformer_fuzz::tokenizer::run, 3),
        ("settings", microformer_fuzz::settings::run, 3),
    ] {
        let (ok, all) = passing(target, run);
        eprintln!("{target}: {ok} of {all} seeds go the whole way");
        assert!(
            ok >= at_least,
            "{target}: only {ok} of {all} seeds go the whole way"
        );
    }
}
