//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` (cargo-fuzz, libFuzzer), one per input
//! surface — `image`, `llama2c`, `hf`, `tokenizer`, `settings` (see `fuzz/README.md`).
//!
//! Installs `cargo-fuzz` when it is missing (`cargo install cargo-fuzz --locked`), builds
//! the targets with the machine's toolchain — a stable one with `RUSTC_BOOTSTRAP=1`, as
//! libFuzzer's instrumentation flags are unstable — then, per target:
//!
//! 1. replays the crashes found earlier (`fuzz/regressions/<target>/`, each also a
//!    regression test of the crate that owns the parser): every one must run clean now
//!    (they are the "fixed" column);
//! 2. runs libFuzzer for `--runs` executions (`-max_total_time` as a guard) over the
//!    committed seeds (`fuzz/seeds/<target>/`) and a working corpus
//!    (`fuzz/corpus/<target>/`, git-ignored); a crash fails the command and leaves its
//!    input in `fuzz/artifacts/<target>/`.
//!
//! `--write` records the figures (executions, crashes found and fixed) in `docs/fuzz.json`,
//! `docs/fuzz.md` and README.md's table between `<!-- fuzz:begin -->` and
//! `<!-- fuzz:end -->` (a test checks that the README quotes the json). `cargo xtask test`
//! runs [`short`]: every target for a few thousand executions from its seeds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::util::{describe, root, run_cmd, secs, works};

/// The targets, one per input surface.
pub const TARGETS: [&str; 5] = ["image", "llama2c", "hf", "tokenizer", "settings"];

/// What `cargo xtask test` runs per target: executions (each from the seeds on).
const SHORT_RUNS: [(&str, u64); 5] = [
    ("image", 40_000),
    ("llama2c", 40_000),
    ("hf", 10_000),
    ("tokenizer", 60_000),
    ("settings", 400_000),
];

/// Largest input libFuzzer makes (the seeds are below it).
const MAX_LEN: usize = 32 * 1024;

const BEGIN: &str = "<!-- fuzz:begin -->";
const END: &str = "<!-- fuzz:end -->";

/// What `cargo xtask fuzz` takes.
#[derive(Debug, Clone, Args)]
pub struct FuzzArgs {
    /// Executions per target
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    runs: u64,
    /// Seconds per target at most (libFuzzer's -max_total_time), a guard
    #[arg(long, value_name = "S", default_value_t = 7200)]
    max_time: u64,
    /// Only these targets (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    targets: Vec<String>,
    /// Also write docs/fuzz.{json,md} and README.md's table (rows of other targets kept)
    #[arg(long)]
    write: bool,
    /// libFuzzer's sanitizer: `none` (safe Rust: every bounds check is already a panic) or
    /// `address`
    #[arg(long, value_name = "S", default_value = "none")]
    sanitizer: String,
    /// Use the targets built last (no `cargo fuzz build`)
    #[arg(long)]
    no_build: bool,
    /// Only what `cargo xtask test` runs (the fuzz crate's tests, a few thousand executions
    /// per target); the other options are ignored
    #[arg(long)]
    short: bool,
}

/// One target's figures (a row of `docs/fuzz.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The target.
    pub target: String,
    /// Executions of the last campaign.
    pub executions: u64,
    /// Its wall time, seconds.
    pub seconds: f64,
    /// Crashes found in all (the regression inputs, and any of this campaign).
    pub crashes_found: u64,
    /// Of which fixed: their inputs run clean.
    pub crashes_fixed: u64,
    /// The regression inputs, one line each: file name and what it was.
    pub crashes: Vec<String>,
}

/// `docs/fuzz.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Figures {
    /// The toolchain (`rustc --version`) and sanitizer of the runs.
    pub toolchain: String,
    /// libFuzzer's sanitizer.
    pub sanitizer: String,
    /// One row per target.
    pub rows: Vec<Row>,
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

fn target_dir() -> PathBuf {
    root().join("target").join("fuzz")
}

/// The host triple (`rustc -vV`).
fn host_triple() -> Result<String, String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .ok_or_else(|| "rustc -vV names no host".into())
}

fn rustc_version() -> String {
    Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` does not run.
fn ensure_cargo_fuzz() -> Result<(), String> {
    if works("cargo", &["fuzz", "--version"]) {
        eprintln!("xtask: cargo-fuzz already installed");
        return Ok(());
    }
    run_cmd(
        Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .current_dir(root()),
    )
}

/// `cargo fuzz build` of every target: release, debug assertions (overflow checks) on.
fn build(sanitizer: &str) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.args(["fuzz", "build", "--sanitizer", sanitizer])
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir());
    // libFuzzer's instrumentation flags are unstable: a stable toolchain takes them with
    // RUSTC_BOOTSTRAP (a fresh machine has only the stable toolchain).
    if !rustc_version().contains("nightly") {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    run_cmd(&mut cmd)
}

fn binary(target: &str) -> Result<PathBuf, String> {
    let b = target_dir()
        .join(host_triple()?)
        .join("release")
        .join(target);
    if b.is_file() {
        Ok(b)
    } else {
        Err(format!("{} is not built", b.display()))
    }
}

/// The files of a directory (none when it does not exist), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What libFuzzer reported: executions, and the crash input it wrote, if any.
struct Outcome {
    executions: u64,
    crash: Option<String>,
    ok: bool,
}

fn libfuzzer(target: &str, args: &[String]) -> Result<Outcome, String> {
    let mut cmd = Command::new(binary(target)?);
    cmd.args(args).current_dir(root());
    eprintln!("xtask: $ {}", describe(&cmd));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the {target} target: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    // "Done 10000000 runs in 812 second(s)"; a crash ends the run earlier, its count on
    // the last "#N ..." status line.
    let done = log.lines().find_map(|l| {
        l.strip_prefix("Done ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    });
    let last_status = log.lines().rev().find_map(|l| {
        l.strip_prefix('#')
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    });
    let crash = log
        .lines()
        .find_map(|l| l.split("Test unit written to ").nth(1))
        .map(|s| s.trim().to_string());
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        for l in tail.into_iter().rev() {
            eprintln!("  {l}");
        }
    }
    Ok(Outcome {
        executions: done.or(last_status).unwrap_or(0),
        crash,
        ok: out.status.success(),
    })
}

/// The regression inputs of `target` (crashes found earlier): each must run clean.
/// Returns (found, fixed, their names).
fn replay(target: &str) -> Result<(u64, u64, Vec<String>), String> {
    let dir = fuzz_dir().join("regressions").join(target);
    let inputs = files(&dir);
    let mut fixed = 0;
    let mut names = Vec::new();
    for input in &inputs {
        let o = libfuzzer(target, &[input.display().to_string()])?;
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if o.ok {
            fixed += 1;
        } else {
            eprintln!("xtask: fuzz {target}: regression input {name} crashes again");
        }
        names.push(name);
    }
    Ok((inputs.len() as u64, fixed, names))
}

/// A campaign of `runs` executions on `target` from its seeds, new inputs kept in `corpus`.
fn campaign(target: &str, runs: u64, max_time: u64, corpus: &Path) -> Result<Outcome, String> {
    let artifacts = fuzz_dir().join("artifacts").join(target);
    for d in [corpus, &artifacts] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let args = vec![
        format!("-runs={runs}"),
        format!("-max_total_time={max_time}"),
        format!("-max_len={MAX_LEN}"),
        "-print_final_stats=1".to_string(),
        format!("-artifact_prefix={}/", artifacts.display()),
        corpus.display().to_string(),
        fuzz_dir().join("seeds").join(target).display().to_string(),
    ];
    libfuzzer(target, &args)
}

/// `cargo xtask fuzz`.
pub fn fuzz(args: FuzzArgs) -> Result<(), String> {
    if args.short {
        return short().map(|_| ());
    }
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                return Err(format!(
                    "no fuzz target {t} (targets: {})",
                    TARGETS.join(", ")
                ));
            }
        }
        TARGETS
            .into_iter()
            .filter(|t| args.targets.iter().any(|a| a == t))
            .collect()
    };
    if !args.no_build {
        ensure_cargo_fuzz()?;
        build(&args.sanitizer)?;
    }
    let mut rows = Vec::new();
    let mut crashed = Vec::new();
    for t in targets {
        let (found, fixed, crashes) = replay(t)?;
        let start = Instant::now();
        let corpus = fuzz_dir().join("corpus").join(t);
        let o = campaign(t, args.runs, args.max_time, &corpus)?;
        let seconds = (start.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        eprintln!(
            "xtask: fuzz {t}: {} executions in {}, {}",
            o.executions,
            secs(start.elapsed()),
            if o.ok { "no crash" } else { "CRASH" }
        );
        let new = u64::from(!o.ok);
        if let Some(c) = &o.crash {
            crashed.push(format!("{t}: {c}"));
        } else if !o.ok {
            crashed.push(format!("{t}: failed without a crash input"));
        }
        rows.push(Row {
            target: t.to_string(),
            executions: o.executions,
            seconds,
            crashes_found: found + new,
            crashes_fixed: fixed,
            crashes,
        });
    }
    if args.write {
        write(&rows, &args.sanitizer)?;
    }
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzzing found crashes: {}", crashed.join("; ")))
    }
}

/// `cargo xtask test`'s fuzz step: the fuzz crate's tests, cargo-fuzz installed if missing,
/// the targets built, the regression inputs replayed, and every target run for
/// [`SHORT_RUNS`] executions from its seeds (a scratch corpus: the committed one is not
/// touched).
pub fn short() -> Result<std::time::Duration, String> {
    let start = Instant::now();
    // The harnesses' own tests: the seeds go the whole way (models open and step, files
    // convert), the input splitting.
    run_cmd(
        Command::new("cargo")
            .args(["test", "--manifest-path", "fuzz/Cargo.toml"])
            .current_dir(root())
            .env("CARGO_TARGET_DIR", target_dir()),
    )?;
    ensure_cargo_fuzz()?;
    build("none")?;
    for (t, runs) in SHORT_RUNS {
        let (found, fixed, _) = replay(t)?;
        if fixed != found {
            return Err(format!(
                "fuzz {t}: {} regression input(s) crash again",
                found - fixed
            ));
        }
        let scratch = target_dir().join("short-corpus").join(t);
        let _ = std::fs::remove_dir_all(&scratch);
        let o = campaign(t, runs, 120, &scratch)?;
        if !o.ok {
            return Err(format!(
                "fuzz {t}: crash after {} executions ({})",
                o.executions,
                o.crash.as_deref().unwrap_or("no input written")
            ));
        }
        eprintln!("xtask: fuzz {t}: {} executions, no crash", o.executions);
    }
    eprintln!("xtask: fuzz step passed ({})", secs(start.elapsed()));
    Ok(start.elapsed())
}

fn write(rows: &[Row], sanitizer: &str) -> Result<(), String> {
    let docs = root().join("docs");
    let json_path = docs.join("fuzz.json");
    let mut figs: Figures = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    figs.toolchain = rustc_version();
    figs.sanitizer = sanitizer.to_string();
    for r in rows {
        match figs.rows.iter_mut().find(|x| x.target == r.target) {
            Some(x) => *x = r.clone(),
            None => figs.rows.push(r.clone()),
        }
    }
    figs.rows
        .sort_by_key(|r| TARGETS.iter().position(|t| *t == r.target));
    let json = serde_json::to_string_pretty(&figs).map_err(|e| e.to_string())? + "\n";
    let put = |p: PathBuf, s: &str| {
        std::fs::write(&p, s).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    put(json_path, &json)?;
    put(docs.join("fuzz.md"), &markdown(&figs))?;
    let readme_path = root().join("README.md");
    let readme =
        std::fs::read_to_string(&readme_path).map_err(|e| format!("cannot read README.md: {e}"))?;
    put(readme_path, &replace_block(&readme, &table(&figs))?)?;
    eprintln!("xtask: wrote docs/fuzz.json, docs/fuzz.md and README.md's fuzz table");
    Ok(())
}

/// The table README.md and docs/fuzz.md show.
pub fn table(f: &Figures) -> String {
    let mut s = String::from(
        "| target | input | executions | crashes found | fixed |\n|---|---|--:|--:|--:|\n",
    );
    for r in &f.rows {
        let input = match r.target.as_str() {
            "image" => "`Image::parse`, `Model::new`, steps (float and integer), generation",
            "llama2c" => "llama2.c checkpoint (v0, v1, v2) and tokenizer readers, conversion",
            "hf" => {
                "`config.json` (and `microformer tables`), safetensors, shard index, conversion"
            }
            "tokenizer" => "`Tokenizer::new`, `encode`, `decode`, `from_parts`",
            "settings" => "the firmware's semihosting command line",
            _ => "",
        };
        let _ = writeln!(
            s,
            "| `{}` | {input} | {} | {} | {} |",
            r.target,
            group(r.executions),
            r.crashes_found,
            r.crashes_fixed
        );
    }
    s
}

/// `12345678` as `12 345 678`.
fn group(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn markdown(f: &Figures) -> String {
    let mut s = String::from(
        "# Fuzzing\n\nWritten by `cargo xtask fuzz --write` (see `fuzz/README.md`): the last \
         campaign of each target, libFuzzer through cargo-fuzz",
    );
    let _ = write!(s, " ({}, sanitizer `{}`).\n\n", f.toolchain, f.sanitizer);
    s.push_str(&table(f));
    s.push_str("\n| target | seconds | executions per second |\n|---|--:|--:|\n");
    for r in &f.rows {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} |",
            r.target,
            r.seconds,
            group((r.executions as f64 / r.seconds.max(0.1)) as u64)
        );
    }
    s.push_str("\n## Crashes found\n\nEach input is in `fuzz/regressions/<target>/` and is a regression test of the crate that owns the parser.\n\n");
    let mut any = false;
    for r in &f.rows {
        for c in &r.crashes {
            any = true;
            let _ = writeln!(s, "- `{}`: `{c}`", r.target);
        }
    }
    if !any {
        s.push_str("None.\n");
    }
    s
}

fn replace_block(text: &str, inner: &str) -> Result<String, String> {
    let begin = text
        .find(BEGIN)
        .ok_or_else(|| format!("README.md has no {BEGIN} marker"))?;
    let end = text
        .find(END)
        .ok_or_else(|| format!("README.md has no {END} marker"))?;
    if end < begin {
        return Err("README.md's fuzz markers are out of order".into());
    }
    Ok(format!(
        "{}{BEGIN}\n<!-- Written by `cargo xtask fuzz --write`: do not edit down to the end marker. -->\n{inner}{}",
        &text[..begin],
        &text[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_quotes_docs_fuzz_json() {
        let root = root();
        let json = std::fs::read_to_string(root.join("docs").join("fuzz.json")).unwrap();
        let figs: Figures = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = figs.rows.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            names, TARGETS,
            "docs/fuzz.json has a row per target, in order"
        );
        for r in &figs.rows {
            assert!(r.crashes_fixed <= r.crashes_found);
            assert!(r.crashes.len() as u64 <= r.crashes_found, "{}", r.target);
        }
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        assert_eq!(
            replace_block(&readme, &table(&figs)).unwrap(),
            readme,
            "README.md's fuzz table is not docs/fuzz.json's: rerun `cargo xtask fuzz --write`"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("docs").join("fuzz.md")).unwrap(),
            markdown(&figs)
        );
    }

    #[test]
    fn figures_print_grouped() {
        assert_eq!(group(10_000_000), "10 000 000");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1 000");
        let t = table(&Figures {
            rows: vec![Row {
                target: "settings".into(),
                executions: 12_345_678,
                seconds: 1.0,
                crashes_found: 2,
                crashes_fixed: 2,
                crashes: vec![],
            }],
            ..Figures::default()
        });
        assert!(t.contains(
            "| `settings` | the firmware's semihosting command line | 12 345 678 | 2 | 2 |"
        ));
        assert!(replace_block("no markers", "x").is_err());
    }
}
