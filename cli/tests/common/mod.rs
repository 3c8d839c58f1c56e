//! Helpers shared by the CLI's integration tests: running the built binary,
//! temporary directories, reading and writing safetensors files.
#![allow(dead_code)]

pub mod own;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_microformer");

/// `<name>` in the reference models folder (`../shared/models`, or
/// `MICROFORMER_REFERENCE_DIR`), which a clone may lack: a test first checks that its files
/// are there with `microformer_testkit::reference_files!` (which records the skip, by
/// name, when they are not) and returns if not.
pub fn model(name: &str) -> PathBuf {
    microformer_testkit::reference::models_dir().join(name)
}

/// A Hugging Face fixture of the repository (`tests/fixtures/hf/<name>`): the public set
/// (copied from `../shared/fixtures/hf`) and the project's own; see the README there.
pub fn hf_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/hf")
        .join(name)
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "microformer-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a run of the binary gave.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs the binary with these arguments.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out: Output = Command::new(BIN)
        .args(args)
        .output()
        .expect("run microformer");
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and asserts success.
pub fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Run {
    let r = run(args);
    assert_eq!(r.code, Some(0), "{args:?} failed: {}", r.stderr);
    r
}

/// Runs, asserts the exit status, one `microformer: error:` line containing
/// `needle`, and no panic.
pub fn fails<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    args: &[S],
    code: i32,
    needle: &str,
) -> Run {
    let r = run(args);
    assert_eq!(r.code, Some(code), "{args:?}: stderr {}", r.stderr);
    assert!(
        !r.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(needle),
        "{args:?}: stderr {:?} lacks {needle:?}",
        r.stderr
    );
    assert!(
        r.stderr.starts_with("microformer: error: "),
        "{args:?}: stderr {:?}",
        r.stderr
    );
    r
}

/// A command-line error caught by clap: exit status 2, clap's message on one
/// `microformer: error:` line.
pub fn bad_flags<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], needle: &str) {
    let r = run(args);
    assert_eq!(r.code, Some(2), "{args:?}: stderr {}", r.stderr);
    assert!(
        !r.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        r.stderr
    );
    assert!(
        r.stderr.starts_with("microformer: error: ") && r.stderr.lines().count() == 1,
        "{args:?}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(needle),
        "{args:?}: {:?} lacks {needle:?}",
        r.stderr
    );
}

/// A comma-separated id list.
pub fn id_list(ids: &[u32]) -> String {
    ids.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses space-separated ids.
pub fn parse_ids(s: &str) -> Vec<u32> {
    s.split_whitespace().map(|t| t.parse().unwrap()).collect()
}

/// A JSON file.
pub fn json(path: &Path) -> Value {
    let t = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&t).unwrap()
}

/// A JSON array of integers.
pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A safetensors file in memory: its header entries and data section.
pub struct St {
    pub header: Map<String, Value>,
    pub data: Vec<u8>,
}

impl St {
    pub fn read(path: &Path) -> St {
        let b = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let Value::Object(header) = serde_json::from_slice(&b[8..8 + n]).unwrap() else {
            panic!("header")
        };
        St {
            header,
            data: b[8 + n..].to_vec(),
        }
    }

    /// The file: the entries' data laid out again in the order of their offsets,
    /// so that data left behind by `remove` or a replacing `put` is dropped and the
    /// data covers the file without gaps, as the format requires.
    pub fn bytes(&self) -> Vec<u8> {
        let offsets = |e: &Value| {
            let o = e["data_offsets"].as_array().unwrap();
            (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            )
        };
        let mut entries: Vec<(&String, &Value)> = self
            .header
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .collect();
        entries.sort_by_key(|(_, e)| offsets(e));
        let mut header = self.header.clone();
        let mut data = Vec::new();
        for (name, e) in entries {
            let (b, end) = offsets(e);
            let begin = data.len();
            data.extend_from_slice(&self.data[b..end]);
            header[name.as_str()]["data_offsets"] = serde_json::json!([begin, data.len()]);
        }
        let text = Value::Object(header).to_string();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.header[name]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    }

    /// An F32 tensor's values.
    pub fn f32(&self, name: &str) -> Vec<f32> {
        let e = &self.header[name];
        assert_eq!(e["dtype"], "F32");
        let o = e["data_offsets"].as_array().unwrap();
        let (b, end) = (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        );
        self.data[b..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Adds (or replaces) an F32 tensor, appending its data.
    pub fn put(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        assert_eq!(shape.iter().product::<usize>(), values.len());
        let begin = self.data.len();
        for v in values {
            self.data.extend_from_slice(&v.to_le_bytes());
        }
        self.header.insert(
            name.into(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, self.data.len()]}),
        );
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.header.remove(name).is_some()
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.bytes()).unwrap();
    }
}

/// Copies a Hugging Face fixture directory's config.json and model.safetensors.
pub fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(hf_fixture(name).join(f), to.join(f)).unwrap();
    }
}

/// Edits a config.json in place.
pub fn edit_config(dir: &Path, f: impl FnOnce(&mut Map<String, Value>)) {
    let p = dir.join("config.json");
    let Value::Object(mut m) = json(&p) else {
        panic!("config")
    };
    f(&mut m);
    std::fs::write(&p, Value::Object(m).to_string()).unwrap();
}

/// Worst absolute difference between two logit tables (same shapes asserted).
pub fn max_abs_diff(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), b.len(), "positions");
    let mut worst = 0.0f64;
    for (ra, rb) in a.iter().zip(b) {
        let (ra, rb) = (ra.as_array().unwrap(), rb.as_array().unwrap());
        assert_eq!(ra.len(), rb.len(), "vocab");
        for (x, y) in ra.iter().zip(rb) {
            worst = worst.max((x.as_f64().unwrap() - y.as_f64().unwrap()).abs());
        }
    }
    worst
}

/// A fixture made for this project (`tests/fixtures/hf/`; the same folder as
/// [`hf_fixture`]).
pub fn extra_fixture(name: &str) -> PathBuf {
    hf_fixture(name)
}

/// `microformer convert SRC -o OUT EXTRA…`, which must succeed.
pub fn convert(src: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "convert".to_string(),
        src.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(&args)
}

/// `microformer logits IMG --tokens …`: its `logits` array.
pub fn logits(img: &Path, tokens: &[u32]) -> Value {
    let r = ok(&[
        "logits".to_string(),
        img.display().to_string(),
        "--tokens".into(),
        id_list(tokens),
    ]);
    let v: Value = serde_json::from_slice(&r.stdout).expect("logits JSON");
    v["logits"].clone()
}

/// `run --ids -t 0` from `prompt`, returning the tokens generated after it.
pub fn greedy(img: &Path, prompt: &[u32], new_tokens: usize) -> Vec<u32> {
    let steps = prompt.len() - 1 + new_tokens;
    let r = ok(&[
        "run".to_string(),
        img.display().to_string(),
        "--ids".into(),
        "-t".into(),
        "0".into(),
        "-n".into(),
        steps.to_string(),
        "--prompt-ids".into(),
        id_list(prompt),
    ]);
    let ids = parse_ids(&r.text());
    // run.c emits the prompt tokens after the first, then the generated ones.
    assert_eq!(&ids[..prompt.len() - 1], &prompt[1..]);
    ids[prompt.len() - 1..].to_vec()
}
