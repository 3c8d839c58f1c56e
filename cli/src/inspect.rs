//! `microformer inspect`: what an image holds and what it costs — the header
//! fields, the tensor directory (kind, layer, dtype, shape, bytes), the flash
//! bytes and the RAM arena a session needs for a few context lengths up to the
//! image's `seq_len`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use microformer::image::{self, DType, FfnKind, NormKind, PositionHook, Residual, TensorKind};

use crate::error::{fail, Result};
use crate::files::ImageFile;

/// Arguments of `microformer inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// A model image written by `microformer convert`.
    pub image: PathBuf,
}

/// The snake_case name of a tensor kind.
pub fn kind_name(k: TensorKind) -> &'static str {
    use TensorKind::*;
    match k {
        TokenEmbedding => "token_embedding",
        FinalNorm => "final_norm",
        Output => "output",
        RopeCos => "rope_cos",
        RopeSin => "rope_sin",
        Tokenizer => "tokenizer",
        AttnNorm => "attn_norm",
        Wq => "wq",
        Wk => "wk",
        Wv => "wv",
        Bq => "bq",
        Bk => "bk",
        Bv => "bv",
        Wo => "wo",
        FfnNorm => "ffn_norm",
        WGate => "w_gate",
        WUp => "w_up",
        WDown => "w_down",
        PosEmbedding => "pos_embedding",
        EmbedNorm => "embed_norm",
        EmbedNormBias => "embed_norm_bias",
        FinalNormBias => "final_norm_bias",
        OutputBias => "output_bias",
        AlibiSlopes => "alibi_slopes",
        T5Buckets => "t5_buckets",
        T5Bias => "t5_bias",
        AttnNormBias => "attn_norm_bias",
        Bo => "bo",
        FfnNormBias => "ffn_norm_bias",
        BGate => "b_gate",
        BUp => "b_up",
        BDown => "b_down",
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::Q8 => "q8",
        DType::U8 => "u8",
        DType::F16 => "f16",
    }
}

/// Context lengths to report: powers of two from 16, and `seq_len` itself.
pub fn report_contexts(seq_len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(16usize), |&c| c.checked_mul(4))
        .take_while(|&c| c < seq_len)
        .collect();
    if seq_len < 16 {
        v.clear();
    }
    v.insert(0, 1);
    v.push(seq_len);
    v.dedup();
    v
}

/// Runs the subcommand.
pub fn run(args: &InspectArgs) -> Result<()> {
    let file = ImageFile::load(&args.image)?;
    let img = file.image()?;
    let h = *img.header();
    let mut s = String::new();
    let flags: Vec<&str> = [
        (image::FLAG_TIED_EMBEDDINGS, "tied_embeddings"),
        (image::FLAG_ROPE_INTERLEAVED, "rope_interleaved"),
        (image::FLAG_QKV_BIAS, "qkv_bias"),
        (image::FLAG_TOKENIZER, "tokenizer"),
        (image::FLAG_O_BIAS, "o_bias"),
        (image::FLAG_MLP_BIAS, "mlp_bias"),
        (image::FLAG_OUTPUT_BIAS, "output_bias"),
        (image::FLAG_EMBED_NORM, "embed_norm"),
    ]
    .iter()
    .filter(|(f, _)| h.has(*f))
    .map(|(_, n)| *n)
    .collect();
    let _ = writeln!(s, "image:          {}", file.path);
    let _ = writeln!(s, "format:         version {}, checksum ok", image::VERSION);
    let _ = writeln!(s, "flash bytes:    {}", h.image_len);
    let _ = writeln!(s, "arch:           {:?}", h.arch);
    let _ = writeln!(
        s,
        "flags:          {}",
        if flags.is_empty() {
            "(none)".to_string()
        } else {
            flags.join(" ")
        }
    );
    let b = h.block;
    let _ = writeln!(
        s,
        "block:          {}, {}, {}",
        match b.norm {
            NormKind::Rms => "rmsnorm",
            NormKind::LayerNorm => "layernorm",
            NormKind::LayerNormNoBias => "layernorm (no bias)",
        },
        match b.ffn {
            FfnKind::SwiGlu => "swiglu",
            FfnKind::GeluTanh => "gelu_tanh mlp",
            FfnKind::Gelu => "gelu mlp",
        },
        match b.residual {
            Residual::Sequential => "sequential",
            Residual::ParallelShared => "parallel (one norm)",
            Residual::Parallel => "parallel (two norms)",
        }
    );
    let _ = writeln!(
        s,
        "positions:      {}",
        match b.position {
            PositionHook::Rope => "rope (rotation)".to_string(),
            PositionHook::Alibi => "alibi (score bias)".to_string(),
            PositionHook::Table => format!("table (embedding, row position + {})", b.pos_offset),
            PositionHook::None => "none (causal attention alone)".to_string(),
            PositionHook::T5 => format!(
                "t5 (score bias, {} causal buckets, max_distance {})",
                b.t5.num_buckets, b.t5.max_distance
            ),
        }
    );
    if b.embed_scale != 0.0 {
        let _ = writeln!(s, "embed_scale:    {}", b.embed_scale);
    }
    if b.attn_scale != 0.0 {
        let _ = writeln!(s, "attn_scale:     {}", b.attn_scale);
    }
    if b.position == PositionHook::Rope {
        let _ = writeln!(
            s,
            "rope pairs:     {}",
            if h.has(image::FLAG_ROPE_INTERLEAVED) {
                "interleaved (2i, 2i+1)"
            } else {
                "half-split (i, i + rotary_dim/2)"
            }
        );
    }
    for (name, v) in [
        ("dim", h.dim),
        ("hidden_dim", h.hidden_dim),
        ("n_layers", h.n_layers),
        ("n_heads", h.n_heads),
        ("n_kv_heads", h.n_kv_heads),
        ("head_dim", h.head_dim),
        ("rotary_dim", h.rotary_dim),
        ("vocab_size", h.vocab_size),
        ("seq_len", h.seq_len),
        ("train_context", h.train_context),
        ("sliding_window", h.sliding_window),
        ("group_size", h.group_size),
        ("bos_id", h.bos_id),
        ("eos_id", h.eos_id),
        ("n_tensors", h.n_tensors),
    ] {
        let _ = writeln!(s, "{:<16}{v}", format!("{name}:"));
    }
    let _ = writeln!(s, "{:<16}{:e}", "norm_eps:", h.norm_eps);

    let _ = writeln!(s, "\ntensors:");
    let _ = writeln!(
        s,
        "  {:<16} {:>5} {:<5} {:>14} {:>12}",
        "kind", "layer", "dtype", "shape", "bytes"
    );
    let mut total = [0usize; 4];
    for (kind, layer) in image::slots(&h) {
        let Some(r) = img.record(kind, layer as usize) else {
            fail!(
                "{}: tensor {} of layer {layer} is missing",
                file.path,
                kind_name(kind)
            );
        };
        let n = r.rows as usize * r.cols as usize;
        let bytes = match r.dtype {
            DType::F32 => 4 * n,
            DType::U8 => n,
            DType::Q8 => n + 4 * (n / (h.q8_group(r.group).max(1) as usize)),
            DType::F16 => 2 * n,
        };
        total[r.dtype as usize] += bytes;
        let _ = writeln!(
            s,
            "  {:<16} {:>5} {:<5} {:>14} {:>12}",
            kind_name(kind),
            if kind.per_layer() {
                layer.to_string()
            } else {
                "-".into()
            },
            dtype_name(r.dtype),
            format!("{}x{}", r.rows, r.cols),
            bytes
        );
    }
    let _ = writeln!(
        s,
        "  total: {} bytes f32, {} bytes q8, {} bytes f16, {} bytes u8",
        total[DType::F32 as usize],
        total[DType::Q8 as usize],
        total[DType::F16 as usize],
        total[DType::U8 as usize]
    );

    match file.model() {
        Ok(model) => {
            let _ = writeln!(
                s,
                "\nRAM arena per session (bytes, by context length; f32 KV cache, int8 KV cache):"
            );
            for c in report_contexts(h.seq_len as usize) {
                let _ = writeln!(
                    s,
                    "  {:>8} {:>14} {:>14}",
                    c,
                    model.arena_bytes(c),
                    model.arena_bytes_with(c, microformer::model::KvFormat::Q8)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(s, "\nnot runnable: {e}");
        }
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => fail!("cannot write the output: {e}"),
    }
}
