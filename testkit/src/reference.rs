//! The reference models beside the repository (feature `std`): llama2.c checkpoints,
//! tokenizers and `run.c`'s recorded outputs, which may not be committed.
//!
//! They live in `<repo>/../shared/models` for the project's developers and CI, or in the
//! folder [`DIR_VAR`] (`MICROFORMER_REFERENCE_DIR`) names; a user's clone has neither. A
//! test that reads them asks for each file through
//! [`reference_file!`](crate::reference_file) (or
//! [`reference_files!`](crate::reference_files)) and returns early when it gets
//! `None`: the skip is then recorded by name, never a silent pass —
//!
//! ```text
//! skipped: convert/tests/llama2c.rs::q8_agreement: needs aidreams260K.bin (../shared/models or MICROFORMER_REFERENCE_DIR)
//! ```
//!
//! on stderr (which libtest shows only for a failing test or with `--nocapture`), and
//! appended to the file [`SKIP_LOG_VAR`] (`MICROFORMER_SKIP_LOG`) names, which is how
//! `cargo xtask test` lists every skipped check after the test runs.
//!
//! ```ignore
//! #[test]
//! fn q8_agreement() {
//!     let Some(ckpt) = microformer_testkit::reference_file!("aidreams260K.bin") else {
//!         return;
//!     };
//!     // … read `ckpt` …
//! }
//! ```

use std::env;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::string::String;
use std::thread;
use std::vec::Vec;

/// The variable naming the reference models folder; it takes precedence over
/// `../shared/models`, and a folder that does not exist means "absent" (set it to
/// `/nonexistent` to run the tests as a clone without `../shared` would).
pub const DIR_VAR: &str = "MICROFORMER_REFERENCE_DIR";

/// The variable naming a file every skip line is appended to (one line per skip).
pub const SKIP_LOG_VAR: &str = "MICROFORMER_SKIP_LOG";

/// What every skip line starts with.
pub const SKIP_PREFIX: &str = "skipped: ";

/// Where a skip line says the files are looked for (the end of every skip line).
pub const WHERE: &str = "(../shared/models or MICROFORMER_REFERENCE_DIR)";

/// The repository root: the parent of this crate's own manifest directory (`<root>/testkit`).
pub fn repo_root() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit.parent().unwrap_or(testkit).to_path_buf()
}

/// The reference models folder: [`DIR_VAR`] when set and not empty, else
/// `<repo root>/../shared/models`. It may not exist.
pub fn models_dir() -> PathBuf {
    match env::var_os(DIR_VAR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("..").join("shared").join("models"),
    }
}

/// The path of the reference file `name` when it exists; otherwise records that `check`
/// was skipped ([`record_skip`]) and returns `None`.
pub fn file(check: &str, name: &str) -> Option<PathBuf> {
    files(check, [name]).map(|[p]| p)
}

/// The paths of the reference files `names` when all of them exist; otherwise records that
/// `check` was skipped for the missing ones ([`record_skip`]) and returns `None`.
pub fn files<const N: usize>(check: &str, names: [&str; N]) -> Option<[PathBuf; N]> {
    match locate(&models_dir(), names) {
        Ok(paths) => Some(paths),
        Err(missing) => {
            record_skip(check, &missing.join(", "));
            None
        }
    }
}

/// The paths of `names` in `dir` when every one is a file, else the names that are not.
pub fn locate<'a, const N: usize>(
    dir: &Path,
    names: [&'a str; N],
) -> Result<[PathBuf; N], Vec<&'a str>> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !dir.join(n).is_file())
        .collect();
    if missing.is_empty() {
        Ok(names.map(|n| dir.join(n)))
    } else {
        Err(missing)
    }
}

/// The line recording that `check` was skipped because it needs `needs`:
/// `skipped: <check>: needs <needs> (../shared/models or MICROFORMER_REFERENCE_DIR)`.
pub fn skip_line(check: &str, needs: &str) -> String {
    std::format!("{SKIP_PREFIX}{check}: needs {needs} {WHERE}")
}

/// Splits a line of [`skip_line`]'s form into the check's name and what it needs.
pub fn parse_skip_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_end().strip_prefix(SKIP_PREFIX)?;
    let (check, needs) = rest.rsplit_once(": needs ")?;
    let needs = needs.strip_suffix(WHERE).unwrap_or(needs).trim_end();
    Some((check, needs))
}

/// Records that `check` was skipped because it needs `needs` (file names): prints
/// [`skip_line`] on stderr and appends it to the file [`SKIP_LOG_VAR`] names, if set. A
/// skip log that cannot be written is a panic: the skip must not go unseen.
pub fn record_skip(check: &str, needs: &str) {
    let line = skip_line(check, needs);
    std::eprintln!("{line}");
    if let Some(log) = env::var_os(SKIP_LOG_VAR).filter(|l| !l.is_empty()) {
        let log = PathBuf::from(log);
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            // One write per line: appends from parallel tests do not interleave.
            .and_then(|mut f| f.write_all(std::format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            panic!("cannot append to {SKIP_LOG_VAR} {}: {e}", log.display());
        }
    }
}

/// The name of the running check: `<file>::<test>`, the file relative to the repository
/// root (found from `manifest_dir`, the caller's `CARGO_MANIFEST_DIR`, and `file`, its
/// `file!()`, which is relative to the caller's workspace root), the test's name from
/// libtest's thread name (`<module path>::<function>`). Outside a test, the thread's name
/// or `?`.
pub fn check_name(manifest_dir: &str, file: &str) -> String {
    let test = thread::current()
        .name()
        .map(String::from)
        .unwrap_or_else(|| String::from("?"));
    std::format!("{}::{test}", source_path(manifest_dir, file))
}

/// `file` (a `file!()`) relative to the repository root: the first ancestor of
/// `manifest_dir` that holds it gives its full path. `file` as given when none does.
fn source_path(manifest_dir: &str, file: &str) -> String {
    let root = repo_root();
    let full = Path::new(manifest_dir)
        .ancestors()
        .map(|a| a.join(file))
        .find(|p| p.is_file());
    match full.as_deref().and_then(|p| p.strip_prefix(&root).ok()) {
        Some(rel) => rel.to_string_lossy().replace('\\', "/"),
        None => String::from(file),
    }
}

/// The path of a reference model file (`Option<PathBuf>`), or `None` after recording that
/// the running test was skipped (see [`reference`](crate::reference)):
/// `let Some(path) = reference_file!("aidreams260K.bin") else { return };`.
#[macro_export]
macro_rules! reference_file {
    ($name:expr) => {
        $crate::reference::file(
            &$crate::reference::check_name(env!("CARGO_MANIFEST_DIR"), file!()),
            $name,
        )
    };
}

/// The paths of several reference model files (`Option<[PathBuf; N]>`), or `None` after
/// recording that the running test was skipped for the missing ones:
/// `let Some([ckpt, tok]) = reference_files!(["aidreams260K.bin", "aidreams260K.tok512.bin"]) else { return };`.
#[macro_export]
macro_rules! reference_files {
    ($names:expr) => {
        $crate::reference::files(
            &$crate::reference::check_name(env!("CARGO_MANIFEST_DIR"), file!()),
            $names,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lines_round_trip() {
        let line = skip_line("convert/tests/llama2c.rs::q8_agreement", "aidreams260K.bin");
        assert_eq!(
            line,
            "skipped: convert/tests/llama2c.rs::q8_agreement: needs aidreams260K.bin \
             (../shared/models or MICROFORMER_REFERENCE_DIR)"
        );
        assert_eq!(
            parse_skip_line(&line),
            Some(("convert/tests/llama2c.rs::q8_agreement", "aidreams260K.bin"))
        );
        assert_eq!(parse_skip_line("running 3 tests"), None);
    }

    #[test]
    fn locate_names_what_is_missing() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let [a] = locate(dir, ["Cargo.toml"]).unwrap();
        assert_eq!(a, dir.join("Cargo.toml"));
        assert_eq!(
            locate(dir, ["Cargo.toml", "nope.bin", "src"]).unwrap_err(),
            ["nope.bin", "src"]
        );
        assert_eq!(
            locate(Path::new("/nonexistent"), ["a.bin"]).unwrap_err(),
            ["a.bin"]
        );
    }

    #[test]
    fn check_names_are_relative_to_the_root() {
        assert_eq!(
            check_name(env!("CARGO_MANIFEST_DIR"), file!()),
            "testkit/src/reference.rs::reference::tests::check_names_are_relative_to_the_root"
        );
        assert!(repo_root().join("testkit").join("Cargo.toml").is_file());
        // A boards' crate: `file!()` relative to `boards/`.
        let fw = repo_root().join("boards").join("firmware");
        if fw.join("tests").join("run.rs").is_file() {
            assert_eq!(
                source_path(fw.to_str().unwrap(), "firmware/tests/run.rs"),
                "boards/firmware/tests/run.rs"
            );
        }
    }
}
