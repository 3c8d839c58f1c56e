//! `hf`: the Hugging Face reader — `config.json` ([`HfConfig`], and the tables
//! `microformer tables` computes from it, through the CLI's own `tables`
//! module), the safetensors header and data, and the sharded index — and the
//! conversion into an image, which must parse and open as a model.
//!
//! Input: 1 control byte and the `config.json` text, then [`crate::SEP`]-joined
//! files: `model.safetensors`; or, when the control byte's bit 2 is set,
//! `model.safetensors.index.json` and the shards it may name,
//! `model-0000k-of-0000n.safetensors`. The converter reads a directory, so the
//! harness writes the files into one of its own (under `/dev/shm` where there
//! is one) on every run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use microformer::image::Image;
use microformer::model::Model;
use microformer_convert::hf::config::{HfConfig, PositionScheme};
use microformer_convert::hf::extend::RopeScaling;
use microformer_convert::hf::{self, families};
use microformer_convert::Storage;

use crate::output::Format;
use crate::tables::{self, Positions, TablesArgs};
use crate::{parts, Aligned};

/// The largest context the harness converts.
const MAX_CONTEXT: usize = 64;

/// The harness's directory (one per process); on the first call, those of processes
/// that have ended are removed.
fn dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        const PREFIX: &str = "microformer-fuzz-hf-";
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(PREFIX) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        base.join(format!("{PREFIX}{}", std::process::id()))
    })
    .clone()
}

/// The name of shard `i` of `n`.
pub fn shard_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
}

/// Most table entries the harness has `microformer tables` compute and print.
///
/// A config may name up to 2^20 heads or dimensions, and `tables` then computes
/// (one `exp` per ALiBi head) and prints (three formats) a million values: a
/// few milliseconds of the same loop, which slowed the whole target to 800
/// executions per second. Bigger tables are still parsed, planned and
/// converted; their sizes are checked by the CLI's own tests.
const MAX_TABLE: usize = 1 << 12;

/// The entries `tables` would compute for `scheme` with `args` (an upper bound).
fn table_size(scheme: &PositionScheme, args: &TablesArgs) -> usize {
    match scheme {
        PositionScheme::Rope(r) => r.rotary_dim.max(r.head_dim).saturating_mul(4),
        PositionScheme::Alibi(a) => a.n_heads,
        PositionScheme::T5(t) => t.num_buckets.saturating_add(64),
        PositionScheme::Sinusoidal(s) => args
            .num_positions
            .unwrap_or(s.default_num_positions)
            .saturating_mul(s.dim),
        PositionScheme::Learned { .. } => 0,
    }
}

/// `microformer tables` on a parsed config, in every output format (when its
/// tables have at most [`MAX_TABLE`] entries).
fn tables(cfg: &HfConfig, ctrl: u8) {
    let args = TablesArgs {
        config: PathBuf::from("config.json"),
        positions: Some(Positions(vec![0, 1, u32::from(ctrl), 65535])),
        seq_len: (ctrl & 8 != 0).then_some(u64::from(ctrl) + 1),
        num_positions: (ctrl & 16 != 0).then_some(usize::from(ctrl >> 5) + 1),
        relative_range: u32::from(ctrl & 15),
        causal: ctrl & 32 != 0,
        format: Format::Json,
    };
    match cfg.position_scheme() {
        Ok(scheme) if table_size(&scheme, &args) <= MAX_TABLE => {}
        _ => return,
    }
    if let Ok(t) = tables::compute(cfg, &args) {
        let name = cfg.model_type.name();
        let _ = tables::to_json("config.json", name, &t);
        let _ = tables::to_rust("config.json", name, &t);
        let _ = tables::to_c("config.json", name, &t);
    }
}

/// The harness. Returns whether the checkpoint converted.
pub fn run(data: &[u8]) -> bool {
    let p = parts(data);
    let (ctrl, config) = match p[0].split_first() {
        Some((&c, rest)) => (c, rest),
        None => (0, p[0]),
    };
    let Ok(text) = std::str::from_utf8(config) else {
        return false;
    };
    let Ok(cfg) = HfConfig::parse(text) else {
        return false;
    };
    let _ = cfg.position_scheme();
    tables(&cfg, ctrl);
    let _ = families::plan(&cfg, Some(4));

    let d = dir();
    if std::fs::create_dir_all(&d).is_err() {
        return false;
    }
    if let Ok(entries) = std::fs::read_dir(&d) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(d.join(name), bytes).expect("write a harness file");
    };
    write("config.json", config);
    let files = &p[1..];
    if ctrl & 4 == 0 {
        write("model.safetensors", files.first().copied().unwrap_or(b""));
    } else if let Some((index, shards)) = files.split_first() {
        write("model.safetensors.index.json", index);
        for (i, s) in shards.iter().enumerate() {
            write(&shard_name(i, shards.len()), s);
        }
    }
    let opts = hf::Options {
        // Always a small context: a model's own (up to 2048) makes position
        // tables of millions of entries, and a run of milliseconds.
        context: Some(MAX_CONTEXT.min(1 + usize::from(ctrl >> 3))),
        storage: match ctrl & 3 {
            0 => Storage::F32,
            1 => Storage::F16,
            2 => Storage::Q8 { group_size: None },
            _ => Storage::Q8 {
                group_size: Some(usize::from(ctrl >> 4) * 4),
            },
        },
        tokenizer: None,
        rope_scaling: (ctrl & 0x30 == 0x30)
            .then(|| RopeScaling::parse("linear:2").ok())
            .flatten(),
    };
    let Ok((image, _)) = hf::convert(&d, &opts, &mut |_, _, _| {}) else {
        return false;
    };
    let img = Aligned::new(&image);
    let image = match Image::parse(img.bytes()) {
        Ok(i) => i,
        Err(e) => panic!("the converter wrote an image that does not parse: {e:?}"),
    };
    if let Err(e) = Model::new(image) {
        panic!("the converter wrote an image that is not a model: {e:?}");
    }
    true
}
