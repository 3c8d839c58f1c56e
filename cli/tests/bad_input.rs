//! Bad input at the command line, end to end: every subcommand of the built binary
//! on missing files, directories, empty and truncated files, non-UTF-8 paths and
//! prompts, absurd or inconsistent `config.json` dimensions, and out-of-range flag
//! values. Each must exit non-zero with exactly one `microformer: error: …` line on
//! stderr naming the problem, print nothing on stdout, never panic, and leave no file
//! behind (no output image, no partial temporary file).
//!
//! The matrix is also the README's "Bad input" table: [`matrix`] checks that the block
//! between `<!-- bad-input:begin -->` and `<!-- bad-input:end -->` is what it ran
//! (on Linux, whose OS error texts the messages quote); `MICROFORMER_BLESS=1` rewrites
//! the block instead.

#![cfg(unix)]

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TmpDir, BIN};
use serde_json::Value;

/// One bad input: the command, and what it must answer.
struct Case {
    /// The input surface (the README table's first column).
    surface: &'static str,
    /// What is wrong with the input.
    input: &'static str,
    /// Arguments, relative to the test directory.
    args: Vec<OsString>,
    /// Exit status: 2 for usage and configuration errors, 1 for bad files.
    code: i32,
    /// A part of the message that names the problem.
    needle: &'static str,
    /// An address-space limit (KiB, `ulimit -v`) to run it under.
    limit_kib: Option<u64>,
}

fn case(
    surface: &'static str,
    input: &'static str,
    args: &[&str],
    code: i32,
    needle: &'static str,
) -> Case {
    Case {
        surface,
        input,
        args: args.iter().map(OsString::from).collect(),
        code,
        needle,
        limit_kib: None,
    }
}

/// Address space the runs that must not allocate a whole context get (`ulimit -v`,
/// KiB): 400 MB, where the debug binary needs about 20 MB and the 2^20-position
/// session of `alibi-1m.mfi` 1.35 GB.
const LIMIT_KIB: u64 = 400_000;

/// The command for `args`, run in `dir`, under `ulimit -v limit_kib` if given.
fn command(dir: &Path, args: &[OsString], limit_kib: Option<u64>) -> Command {
    let mut c = match limit_kib {
        None => Command::new(BIN),
        Some(kib) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                .arg(BIN);
            c
        }
    };
    c.args(args).current_dir(dir);
    c
}

/// `models/<name>` converted with `--context N` to `out`.
fn convert_own(name: &str, context: &str, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    let o = Command::new(BIN)
        .arg("convert")
        .arg(&src)
        .arg("-o")
        .arg(out)
        .args(["--context", context])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `prefix` + the byte 0xFF (never valid UTF-8) + `suffix`.
fn non_utf8(prefix: &str, suffix: &str) -> OsString {
    let mut b = prefix.as_bytes().to_vec();
    b.push(0xFF);
    b.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(b)
}

/// Every file name under `dir`, recursively, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list the test directory") {
            let p = e.expect("entry").path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a test file");
}

/// A tiny llama2.c legacy (v0) checkpoint: dim 8, hidden 16, 1 layer, 2 heads, 2 KV
/// heads, vocabulary 32, seq_len 8, shared classifier; `header` overrides the seven
/// header words.
fn llama2c_v0(header: Option<[i32; 7]>) -> Vec<u8> {
    let (dim, hidden, layers, vocab, seq, head) = (8usize, 16usize, 1usize, 32usize, 8usize, 4);
    let words = header.unwrap_or([8, 16, 1, 2, 2, 32, 8]);
    let floats = vocab * dim // token embedding
        + layers * (dim + 4 * dim * dim + dim + 3 * hidden * dim) // norms, wq wk wv wo, w1 w2 w3
        + dim // final norm
        + 2 * seq * head / 2; // freq_cis real and imaginary
    let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut state = 0x2545_f491u32;
    for _ in 0..floats {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let x = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        b.extend_from_slice(&x.to_le_bytes());
    }
    b
}

/// A copy of the repository's Hugging Face fixture `llama-rope-default` in `dir`,
/// with `edit` applied to its config.json.
fn hf_dir(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let src = common::hf_fixture("llama-rope-default");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    write(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap().as_bytes(),
    );
}

/// Builds every input file in `d` (paths in the cases are relative to it).
fn make_inputs(d: &Path) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/rope");
    std::fs::create_dir_all(d.join("rope")).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.bin"] {
        std::fs::copy(models.join(f), d.join("rope").join(f)).unwrap();
    }
    let out = Command::new(BIN)
        .args(["convert", "rope", "-o", "rope.mfi"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = std::fs::read(d.join("rope.mfi")).unwrap();
    write(&d.join("empty"), b"");
    std::fs::create_dir(d.join("adir")).unwrap();
    write(&d.join("trunc.mfi"), &image[..image.len() / 2]);
    let mut flipped = image.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 0x40;
    write(&d.join("flipped.mfi"), &flipped);
    write(
        &d.join("text.txt"),
        b"ROMEO. But soft, what light through yonder window breaks?\n",
    );
    convert_own("alibi", "1048576", &d.join("alibi-1m.mfi"));

    let tok = std::fs::read(models.join("tokenizer.bin")).unwrap();
    write(&d.join("trunc.tok"), &tok[..tok.len() / 2]);

    let ck = llama2c_v0(None);
    write(&d.join("tiny.bin"), &ck);
    write(&d.join("trunc.bin"), &ck[..ck.len() - 4]);
    let mut long = ck.clone();
    long.extend_from_slice(&[0; 4]);
    write(&d.join("long.bin"), &long);
    write(
        &d.join("zero.bin"),
        &llama2c_v0(Some([8, 16, 0, 2, 2, 32, 8])),
    );
    write(
        &d.join("neg.bin"),
        &llama2c_v0(Some([8, 16, -1, 2, 2, 32, 8])),
    );
    write(
        &d.join("huge.bin"),
        &llama2c_v0(Some([8, 1 << 30, 1, 2, 2, 32, 8])),
    );
    write(
        &d.join("heads.bin"),
        &llama2c_v0(Some([8, 16, 1, 3, 3, 32, 8])),
    );

    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/xglm-sinusoidal.json"),
        d.join("xglm.json"),
    )
    .unwrap();
    let llama = |hidden: &str| {
        format!(
            r#"{{"model_type": "llama", "hidden_size": {hidden}, "num_attention_heads": 8, "max_position_embeddings": 64}}"#
        )
    };
    write(&d.join("t-zero.json"), llama("0").as_bytes());
    write(&d.join("t-neg.json"), llama("-64").as_bytes());
    write(&d.join("t-huge.json"), llama("1099511627776").as_bytes());

    hf_dir(&d.join("hf-noconfig"), |_| {});
    std::fs::remove_file(d.join("hf-noconfig/config.json")).unwrap();
    hf_dir(&d.join("hf-configdir"), |_| {});
    std::fs::remove_file(d.join("hf-configdir/config.json")).unwrap();
    std::fs::create_dir(d.join("hf-configdir/config.json")).unwrap();
    hf_dir(&d.join("hf-emptyconfig"), |_| {});
    write(&d.join("hf-emptyconfig/config.json"), b"");
    hf_dir(&d.join("hf-truncconfig"), |_| {});
    let text = std::fs::read(d.join("hf-truncconfig/config.json")).unwrap();
    write(
        &d.join("hf-truncconfig/config.json"),
        &text[..text.len() / 2],
    );
    let set = |k: &'static str, v: Value| {
        move |m: &mut serde_json::Map<String, Value>| {
            m.insert(k.into(), v);
        }
    };
    hf_dir(&d.join("hf-zero"), set("hidden_size", 0.into()));
    hf_dir(&d.join("hf-neg"), set("hidden_size", (-64).into()));
    hf_dir(&d.join("hf-huge"), set("hidden_size", (1u64 << 40).into()));
    hf_dir(
        &d.join("hf-layers"),
        set("num_hidden_layers", 100_000.into()),
    );
    hf_dir(
        &d.join("hf-longctx"),
        set("max_position_embeddings", (1u64 << 20).into()),
    );
    hf_dir(&d.join("hf-wide"), set("hidden_size", 128.into()));
    hf_dir(&d.join("hf-vocab"), set("vocab_size", (1 << 20).into()));
    hf_dir(&d.join("hf-heads"), set("num_key_value_heads", 3.into()));
    hf_dir(&d.join("hf-nost"), |_| {});
    std::fs::remove_file(d.join("hf-nost/model.safetensors")).unwrap();
    hf_dir(&d.join("hf-emptyst"), |_| {});
    write(&d.join("hf-emptyst/model.safetensors"), b"");
    hf_dir(&d.join("hf-truncst"), |_| {});
    let st = std::fs::read(d.join("hf-truncst/model.safetensors")).unwrap();
    write(
        &d.join("hf-truncst/model.safetensors"),
        &st[..st.len() - 10],
    );
    hf_dir(&d.join("hf-stdir"), |_| {});
    std::fs::remove_file(d.join("hf-stdir/model.safetensors")).unwrap();
    std::fs::create_dir(d.join("hf-stdir/model.safetensors")).unwrap();
    // Sharded: model.safetensors.index.json instead of model.safetensors.
    for (name, index) in [
        ("hf-index-trunc", r#"{"weight_map": {"model.norm.weight": "#),
        (
            "hf-index-missing",
            r#"{"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}"#,
        ),
        (
            "hf-index-escape",
            r#"{"weight_map": {"model.norm.weight": "../model.safetensors"}}"#,
        ),
    ] {
        hf_dir(&d.join(name), |_| {});
        std::fs::remove_file(d.join(name).join("model.safetensors")).unwrap();
        write(
            &d.join(name).join("model.safetensors.index.json"),
            index.as_bytes(),
        );
    }
}

/// The matrix, surface by surface.
fn cases() -> Vec<Case> {
    const IMG: &str = "model image";
    const L2C: &str = "llama2.c checkpoint";
    const TOK: &str = "tokenizer file";
    const HF: &str = "Hugging Face directory / config.json";
    const TXT: &str = "text file";
    const FLAG: &str = "command-line flags";
    let mut v = Vec::new();
    for cmd in ["run", "inspect", "logits", "perplexity"] {
        let extra: &[&str] = match cmd {
            "logits" => &["--tokens", "1,2"],
            "perplexity" => &["--text", "text.txt"],
            _ => &[],
        };
        for (input, file, code, needle) in [
            ("missing file", "missing.mfi", 1, "cannot read missing.mfi"),
            ("a directory", "adir", 1, "cannot read adir"),
            ("empty file", "empty", 1, "not a valid microformer image"),
            (
                "truncated (first half)",
                "trunc.mfi",
                1,
                "not a valid microformer image",
            ),
            (
                "one byte flipped",
                "flipped.mfi",
                1,
                "not a valid microformer image",
            ),
        ] {
            if cmd != "run" && input == "one byte flipped" {
                continue;
            }
            let mut args = vec![cmd, file];
            args.extend_from_slice(extra);
            v.push(case(IMG, input, &args, code, needle));
        }
        let mut c = case(
            IMG,
            "non-UTF-8 path (missing)",
            &[cmd],
            1,
            "cannot read missing",
        );
        c.args.push(non_utf8("missing", ".mfi"));
        c.args.extend(extra.iter().map(OsString::from));
        v.push(c);
    }

    let mut c = case(
        IMG,
        "context of 2^20 positions, its 1.35 GB arena refused (ulimit -v 400000)",
        &["perplexity", "alibi-1m.mfi", "--text", "text.txt"],
        1,
        "cannot allocate",
    );
    c.limit_kib = Some(LIMIT_KIB);
    // `ulimit -v` (RLIMIT_AS) is enforced on Linux; elsewhere the arena may be granted.
    if cfg!(target_os = "linux") {
        v.push(c);
    }

    let conv = |src: &str| ["convert", src, "-o", "out.mfi"].map(str::to_string);
    let conv_case = |surface, input, src: &str, code, needle| {
        let a = conv(src);
        case(
            surface,
            input,
            &a.each_ref().map(String::as_str),
            code,
            needle,
        )
    };
    v.push(conv_case(
        L2C,
        "missing file",
        "missing.bin",
        1,
        "cannot read missing.bin",
    ));
    v.push(conv_case(L2C, "empty file", "empty", 1, "truncated"));
    v.push(conv_case(
        L2C,
        "truncated by 4 bytes",
        "trunc.bin",
        1,
        "truncated",
    ));
    v.push(conv_case(
        L2C,
        "4 bytes too long",
        "long.bin",
        1,
        "expected",
    ));
    v.push(conv_case(L2C, "n_layers 0", "zero.bin", 1, "zero"));
    v.push(conv_case(L2C, "n_layers -1", "neg.bin", 1, "inconsistent"));
    v.push(conv_case(
        L2C,
        "hidden_dim 2^30",
        "huge.bin",
        1,
        "inconsistent",
    ));
    v.push(conv_case(
        L2C,
        "3 heads for dim 8",
        "heads.bin",
        1,
        "inconsistent",
    ));
    v.push(case(
        L2C,
        "--context past seq_len",
        &["convert", "tiny.bin", "-o", "out.mfi", "--context", "9"],
        2,
        "--context 9",
    ));
    let mut c = case(
        L2C,
        "non-UTF-8 path (missing)",
        &["convert"],
        1,
        "cannot read missing",
    );
    c.args.push(non_utf8("missing", ".bin"));
    c.args.extend(["-o", "out.mfi"].map(OsString::from));
    v.push(c);

    for (input, file, code, needle) in [
        ("missing file", "missing.tok", 1, "cannot read missing.tok"),
        ("a directory", "adir", 1, "cannot read adir"),
        ("empty file", "empty", 1, "tokenizer"),
        ("truncated (first half)", "trunc.tok", 1, "tokenizer"),
    ] {
        v.push(case(
            TOK,
            input,
            &["convert", "rope", "-o", "out.mfi", "--tokenizer", file],
            code,
            needle,
        ));
    }
    v.push(case(
        TOK,
        "another model's vocabulary",
        &[
            "convert",
            "tiny.bin",
            "-o",
            "out.mfi",
            "--tokenizer",
            "rope/tokenizer.bin",
        ],
        1,
        "vocabulary of 32",
    ));

    v.push(conv_case(
        HF,
        "directory without config.json",
        "hf-noconfig",
        1,
        "no config.json",
    ));
    v.push(conv_case(
        HF,
        "config.json is a directory",
        "hf-configdir",
        2,
        "cannot read",
    ));
    v.push(conv_case(
        HF,
        "empty config.json",
        "hf-emptyconfig",
        2,
        "invalid JSON",
    ));
    v.push(conv_case(
        HF,
        "truncated config.json",
        "hf-truncconfig",
        2,
        "invalid JSON",
    ));
    v.push(conv_case(
        HF,
        "hidden_size 0",
        "hf-zero",
        2,
        "hidden_size is 0",
    ));
    v.push(conv_case(HF, "hidden_size -64", "hf-neg", 2, "hidden_size"));
    v.push(conv_case(HF, "hidden_size 2^40", "hf-huge", 2, "too large"));
    v.push(case(
        HF,
        "--context 2^20 (RoPE tables beyond the checkpoint's size)",
        &[
            "convert",
            "hf-longctx",
            "-o",
            "out.mfi",
            "--context",
            "1048576",
        ],
        2,
        "give a smaller --context",
    ));
    v.push(conv_case(
        HF,
        "num_hidden_layers 100000",
        "hf-layers",
        2,
        "too large",
    ));
    v.push(conv_case(
        HF,
        "num_key_value_heads 3 for 8 heads",
        "hf-heads",
        2,
        "not a multiple",
    ));
    v.push(conv_case(
        HF,
        "hidden_size 128, tensors 64",
        "hf-wide",
        1,
        "expected",
    ));
    v.push(conv_case(
        HF,
        "vocab_size 2^20, tensors 128",
        "hf-vocab",
        1,
        "expected",
    ));
    v.push(conv_case(
        HF,
        "no model.safetensors",
        "hf-nost",
        1,
        "cannot read",
    ));
    v.push(conv_case(
        HF,
        "empty model.safetensors",
        "hf-emptyst",
        1,
        "safetensors",
    ));
    v.push(conv_case(
        HF,
        "truncated model.safetensors",
        "hf-truncst",
        1,
        "safetensors",
    ));
    v.push(conv_case(
        HF,
        "model.safetensors is a directory",
        "hf-stdir",
        1,
        "cannot read",
    ));
    v.push(conv_case(
        HF,
        "truncated model.safetensors.index.json",
        "hf-index-trunc",
        1,
        "invalid JSON",
    ));
    v.push(conv_case(
        HF,
        "index naming a missing shard",
        "hf-index-missing",
        1,
        "cannot read",
    ));
    v.push(conv_case(
        HF,
        "index naming a shard outside the directory",
        "hf-index-escape",
        1,
        "bad shard name",
    ));
    for (input, file, code, needle) in [
        (
            "missing file",
            "missing.json",
            2,
            "cannot read missing.json",
        ),
        ("a directory", "adir", 2, "cannot read adir"),
        ("empty file", "empty", 2, "invalid JSON"),
        (
            "truncated config.json",
            "hf-truncconfig/config.json",
            2,
            "invalid JSON",
        ),
        ("hidden_size 0 (no head_dim)", "t-zero.json", 2, "0"),
        ("hidden_size -64", "t-neg.json", 2, "hidden_size"),
        (
            "hidden_size 2^40 (no head_dim)",
            "t-huge.json",
            2,
            "too many entries",
        ),
    ] {
        v.push(case(HF, input, &["tables", file], code, needle));
    }
    let mut c = case(
        HF,
        "non-UTF-8 path (missing)",
        &["tables"],
        2,
        "cannot read missing",
    );
    c.args.push(non_utf8("missing", ".json"));
    v.push(c);

    v.push(case(
        TXT,
        "missing file",
        &["perplexity", "rope.mfi", "--text", "missing.txt"],
        1,
        "cannot read missing.txt",
    ));
    v.push(case(
        TXT,
        "a directory",
        &["perplexity", "rope.mfi", "--text", "adir"],
        1,
        "cannot read adir",
    ));
    v.push(case(
        TXT,
        "empty file",
        &["perplexity", "rope.mfi", "--text", "empty"],
        2,
        "the text is empty",
    ));

    fn run<'a>(flags: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["run", "rope.mfi"];
        a.extend_from_slice(flags);
        a
    }
    for (input, flags, needle) in [
        ("--steps -1", &["--steps", "-1"][..], "'--steps <N>'"),
        (
            "--steps 2^70",
            &["--steps", "1180591620717411303424"],
            "'--steps <N>'",
        ),
        (
            "--temperature NaN",
            &["--temperature", "NaN"],
            "--temperature",
        ),
        (
            "--temperature inf",
            &["--temperature", "inf"],
            "--temperature",
        ),
        (
            "--temperature -1",
            &["--temperature", "-1"],
            "--temperature",
        ),
        ("--top-p NaN", &["--top-p", "NaN"], "--top-p"),
        ("--top-p inf", &["--top-p", "inf"], "--top-p"),
        ("--top-p 1.5", &["--top-p", "1.5"], "--top-p"),
        ("--top-p -0.1", &["--top-p", "-0.1"], "--top-p"),
        (
            "--seed 2^64",
            &["--seed", "18446744073709551616"],
            "bad seed",
        ),
        (
            "--prompt-ids outside the vocabulary",
            &["--prompt-ids", "1,99999"],
            "outside the vocabulary",
        ),
        ("--kv q16 with the float step", &["--kv", "q16"], "--kv q16"),
        ("unknown flag", &["--bogus"], "--bogus"),
    ] {
        v.push(case(FLAG, input, &run(flags), 2, needle));
    }
    let mut c = case(
        FLAG,
        "non-UTF-8 --prompt",
        &run(&["--prompt"]),
        2,
        "--prompt is not valid UTF-8",
    );
    c.args.push(non_utf8("caf", ""));
    v.push(c);
    for (input, args, needle) in [
        (
            "logits --tokens empty item",
            &["logits", "rope.mfi", "--tokens", "1,,2"][..],
            "empty item",
        ),
        (
            "logits --tokens -1",
            &["logits", "rope.mfi", "--tokens", "-1"],
            "bad token id",
        ),
        (
            "logits without --tokens",
            &["logits", "rope.mfi"],
            "--tokens",
        ),
        (
            "perplexity --window 0",
            &[
                "perplexity",
                "rope.mfi",
                "--text",
                "text.txt",
                "--window",
                "0",
            ],
            "--window",
        ),
        (
            "perplexity --window -1",
            &[
                "perplexity",
                "rope.mfi",
                "--text",
                "text.txt",
                "--window",
                "-1",
            ],
            "--window",
        ),
        (
            "perplexity --window 2^40",
            &[
                "perplexity",
                "rope.mfi",
                "--text",
                "text.txt",
                "--window",
                "1099511627776",
            ],
            "exceeds the image's context",
        ),
        (
            "convert --context 0",
            &["convert", "rope", "-o", "out.mfi", "--context", "0"],
            "--context",
        ),
        (
            "convert --context -1",
            &["convert", "rope", "-o", "out.mfi", "--context", "-1"],
            "--context",
        ),
        (
            "convert --context 2^40",
            &[
                "convert",
                "rope",
                "-o",
                "out.mfi",
                "--context",
                "1099511627776",
            ],
            "too large",
        ),
        (
            "convert --context 2^70",
            &[
                "convert",
                "rope",
                "-o",
                "out.mfi",
                "--context",
                "1180591620717411303424",
            ],
            "--context",
        ),
        (
            "convert --group-size 6",
            &[
                "convert",
                "rope",
                "-o",
                "out.mfi",
                "--quant",
                "q8",
                "--group-size",
                "6",
            ],
            "multiple of 4",
        ),
        (
            "convert --group-size -4",
            &[
                "convert",
                "rope",
                "-o",
                "out.mfi",
                "--quant",
                "q8",
                "--group-size",
                "-4",
            ],
            "--group-size",
        ),
        (
            "convert --block-scales without q8",
            &["convert", "rope", "-o", "out.mfi", "--block-scales"],
            "--block-scales needs --quant q8",
        ),
        (
            "convert -o a directory",
            &["convert", "rope", "-o", "adir"],
            "cannot write adir",
        ),
        (
            "convert -o in a missing directory",
            &["convert", "rope", "-o", "nodir/out.mfi"],
            "cannot write nodir/out.mfi",
        ),
        (
            "tables --num-positions 0",
            &["tables", "xglm.json", "--num-positions", "0"],
            "--num-positions is 0",
        ),
        (
            "tables --num-positions 2^40",
            &["tables", "xglm.json", "--num-positions", "1099511627776"],
            "too many entries",
        ),
        (
            "tables --seq-len 0",
            &["tables", "rope/config.json", "--seq-len", "0"],
            "--seq-len",
        ),
        (
            "tables --positions -1",
            &["tables", "rope/config.json", "--positions", "-1"],
            "bad position",
        ),
        (
            "tables --positions 0..2^31",
            &["tables", "rope/config.json", "--positions", "0..2147483648"],
            "positions",
        ),
    ] {
        let code = if input.starts_with("convert -o") {
            1
        } else {
            2
        };
        v.push(case(FLAG, input, args, code, needle));
    }
    v
}

/// A command as the README shows it (the non-UTF-8 byte as `\xFF`).
fn shown(args: &[OsString]) -> String {
    let mut s = String::from("microformer");
    for a in args {
        s.push(' ');
        match a.to_str() {
            Some(t) => s.push_str(t),
            None => {
                for &b in a.as_bytes() {
                    if b.is_ascii() {
                        s.push(b as char);
                    } else {
                        s.push_str(&format!("\\x{b:02X}"));
                    }
                }
            }
        }
    }
    s
}

/// Text safe in a Markdown table cell inside backticks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

const BEGIN: &str = "<!-- bad-input:begin -->";
const END: &str = "<!-- bad-input:end -->";

#[test]
fn matrix() {
    let dir = TmpDir::new("bad-input");
    make_inputs(&dir.0);
    let before = listing(&dir.0);
    let mut failures = Vec::new();
    // (surface, what is wrong, exit, message) → the commands that gave it.
    let mut rows: Vec<(&str, &str, i32, String, Vec<String>)> = Vec::new();
    for c in cases() {
        let cmd = shown(&c.args);
        let out = command(&dir.0, &c.args, c.limit_kib)
            .output()
            .expect("run microformer");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut bad = Vec::new();
        if out.status.code() != Some(c.code) {
            bad.push(format!("exit {:?}, expected {}", out.status.code(), c.code));
        }
        if stderr.contains("panicked") {
            bad.push("panicked".into());
        }
        if !(stderr.ends_with('\n') && stderr.lines().count() == 1) {
            bad.push("stderr is not exactly one line".into());
        }
        if !stderr.starts_with("microformer: error: ") {
            bad.push("stderr is not a microformer: error: line".into());
        }
        if !stderr.contains(c.needle) {
            bad.push(format!("stderr lacks {:?}", c.needle));
        }
        if !out.stdout.is_empty() {
            bad.push(format!("{} bytes on stdout", out.stdout.len()));
        }
        let after = listing(&dir.0);
        if after != before {
            let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
            bad.push(format!("files left behind: {new:?}"));
            for f in new {
                let p = dir.0.join(f);
                let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
            }
        }
        if !bad.is_empty() {
            failures.push(format!("{cmd}: {} (stderr {stderr:?})", bad.join("; ")));
        }
        let msg = stderr
            .trim_end()
            .trim_start_matches("microformer: error: ")
            .to_string();
        let code = out.status.code().unwrap_or(-1);
        let shown = cmd.trim_start_matches("microformer ").to_string();
        match rows
            .iter_mut()
            .find(|r| (r.0, r.1, r.2, &r.3) == (c.surface, c.input, code, &msg))
        {
            Some(r) => r.4.push(shown),
            None => rows.push((c.surface, c.input, code, msg, vec![shown])),
        }
    }
    let mut table = String::from(
        "| input | what is wrong | command | exit | stderr |\n|---|---|---|---|---|\n",
    );
    for (surface, input, code, msg, cmds) in &rows {
        let cmds: Vec<String> = cmds.iter().map(|c| format!("`{}`", cell(c))).collect();
        table.push_str(&format!(
            "| {surface} | {} | {} | {code} | `{}` |\n",
            cell(input),
            cmds.join(", "),
            cell(msg)
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of the bad inputs were mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
    check_readme(&table);
}

/// The README block against the table the matrix produced (rewritten with
/// `MICROFORMER_BLESS=1`). Linux only: the messages quote the OS's error texts.
fn check_readme(table: &str) {
    if !cfg!(target_os = "linux") {
        eprintln!("bad_input: README table not checked (its OS error texts are Linux's)");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no {BEGIN} … {END} block; the table:\n{table}");
    };
    let block = format!(
        "{BEGIN}\n<!-- Written by `MICROFORMER_BLESS=1 cargo test -p microformer-cli --test bad_input`: do not edit down to the end marker. -->\n{table}"
    );
    let current = &readme[b..e];
    if current == block {
        return;
    }
    if std::env::var_os("MICROFORMER_BLESS").is_some() {
        let new = format!("{}{block}{}", &readme[..b], &readme[e..]);
        std::fs::write(&path, new).expect("write README.md");
        eprintln!("bad_input: README table rewritten");
        return;
    }
    panic!(
        "README.md's bad-input table is not what the test ran; rerun with MICROFORMER_BLESS=1 to rewrite it. The table:\n{table}"
    );
}

/// The edge values that are not errors, as documented: `--steps` 0 or past the
/// context is the whole context (run.c's rule), a non-UTF-8 path that exists is read,
/// temperature 0 and top-p 0 or 1 are valid settings.
#[test]
fn accepted_edge_values() {
    let dir = TmpDir::new("bad-input-ok");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/rope");
    let img = dir.join("rope.mfi");
    let out = Command::new(BIN)
        .args([OsStr::new("convert"), models.as_os_str(), OsStr::new("-o")])
        .arg(&img)
        .args(["--context", "16"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = |flags: &[&str]| -> Vec<String> {
        let out = Command::new(BIN)
            .arg("run")
            .arg(&img)
            .args(["--ids", "-t", "0"])
            .args(flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stderr.is_empty());
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let whole = ids(&["-n", "0"]);
    assert_eq!(whole.len(), 16, "one token per position (run.c's loop)");
    assert_eq!(ids(&["-n", "1099511627776"]), whole);
    assert_eq!(ids(&["-n", "16"]), whole);
    assert_eq!(ids(&["-n", "16", "-p", "0"]), whole);
    assert_eq!(ids(&["-n", "16", "-p", "1"]), whole);
    // `run -n 8` on an image of 2^20 positions holds 8 positions, not 2^20 (whose
    // 1.35 GB arena the address-space limit would refuse).
    let big = dir.join("alibi-1m.mfi");
    convert_own("alibi", "1048576", &big);
    // (Linux enforces the limit; elsewhere the run merely succeeds.)
    let args: Vec<OsString> = ["run", "alibi-1m.mfi", "--ids", "-t", "0", "-n", "8"]
        .map(OsString::from)
        .to_vec();
    let out = command(&dir.0, &args, Some(LIMIT_KIB)).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .count(),
        8
    );
    let odd: PathBuf = dir.0.join(OsStr::from_bytes(b"r\xFFope.mfi"));
    std::fs::copy(&img, &odd).unwrap();
    let out = Command::new(BIN).arg("inspect").arg(&odd).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
