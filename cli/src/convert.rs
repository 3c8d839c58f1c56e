//! `microformer convert`: a llama2.c checkpoint or a Hugging Face model directory
//! into a microformer model image.
//!
//! - llama2.c `.bin` (legacy v0, v1 f32, v2 Q8_0): read with
//!   [`microformer_convert::llama2c`]; the RoPE table is computed as `run.c`
//!   computes its angles (f32 `powf`, `pos · freq` in f32, `cosf`/`sinf` of the host's
//!   maths library), so the image reproduces `run.c` token for token. Default
//!   context: the checkpoint's `seq_len`.
//! - A Hugging Face directory (`config.json` + `model.safetensors`, or shards with
//!   `model.safetensors.index.json`): see [`microformer_convert::hf`]. Default context:
//!   `min(max_position_embeddings, 2048)`.
//!
//! `--tokenizer` embeds a llama2.c tokenizer file (checked against the model's
//! vocabulary; a model directory's own `tokenizer.bin` is embedded when the flag
//! is not given); `--rope-scaling linear:F | dynamic:F | yarn:F` applies a RoPE
//! scaling rule to a model directory trained without one
//! ([`microformer_convert::hf::extend`]); `--quant q8` stores the matrices as Q8_0 (`runq.c`'s quantizer),
//! `--quant f16` as IEEE binary16; `--block-scales` adds the Q8 scales'
//! block-float form for the integer step
//! ([`microformer_convert::block_scales`]).
//!
//! After writing a `q8` or `f16` image the converter measures what the storage
//! costs (unless `--no-check`): it builds the f32 image too, lets it generate
//! greedily from BOS (up to 256 positions, stopping at BOS), feeds the same
//! tokens to the written image (teacher-forced) and reports the top-1
//! agreement and the largest logit difference — with a warning below 98 %,
//! where greedy output will visibly drift from the f32 model's.

use std::path::{Path, PathBuf};

use microformer::image::Header;
use microformer_convert::hf;
use microformer_convert::llama2c::{self, Version};
use microformer_convert::Storage;

use crate::error::{bail, CliError, Result};
use crate::files;
use crate::progress::Progress;

/// Matrix storage in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantArg {
    /// 32-bit floats (a v2 checkpoint is dequantized exactly as runq.c does).
    F32,
    /// int8 with one f32 scale per group (llama2.c runq.c's Q8_0).
    Q8,
    /// IEEE binary16 (11 significant bits): half the flash of f32, for models
    /// that need more than 8 bits per weight.
    F16,
}

/// Arguments of `microformer convert`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// A llama2.c checkpoint (.bin: legacy v0, v1 or v2) or a Hugging Face model
    /// directory (config.json + model.safetensors) of type llama, qwen2, mistral, phi3,
    /// gpt2, xglm, bloom, mpt, gptj, gpt_neox, phi or microformer (models/<scheme>).
    pub src: PathBuf,
    /// The image file to write.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// A llama2.c tokenizer file (tokenizer.bin format) to embed in the image
    /// [default: the model directory's tokenizer.bin, if it has one].
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// A RoPE scaling rule for a model directory trained without one:
    /// linear:F (position interpolation), dynamic:F (dynamic NTK, for --context) or
    /// yarn:F (YaRN), F >= 1; the original length is the checkpoint's
    /// training_length (else max_position_embeddings).
    #[arg(long, value_name = "RULE:F", value_parser = parse_scaling)]
    pub rope_scaling: Option<hf::extend::RopeScaling>,
    /// How to store the weight matrices.
    #[arg(long, value_enum, default_value_t = QuantArg::F32)]
    pub quant: QuantArg,
    /// Q8 group size, a multiple of 4 [default: a v2 checkpoint's own, else 64 halved until it divides dim].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(4..=4096), allow_negative_numbers = true)]
    pub group_size: Option<u64>,
    /// Positions the image covers (its RoPE table and largest context) [default: llama2.c: the
    /// checkpoint's seq_len; Hugging Face: min(max_position_embeddings, 2048)]. Dynamic NTK and
    /// LongRoPE choose their frequencies for this length.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub context: Option<u64>,
    /// Store the Q8 scales in block-float form too, for the integer step
    /// (`arith=integer`): per group the f32 scale's mantissa aligned to its row's
    /// largest exponent (2 bytes), per row that exponent (1 byte). The integer step
    /// then reads them instead of decoding every scale at every token: same
    /// results, fewer instructions. Needs --quant q8.
    #[arg(long)]
    pub block_scales: bool,
    /// Skip the agreement check of a q8/f16 image against the f32 one.
    #[arg(long)]
    pub no_check: bool,
}

fn parse_scaling(s: &str) -> std::result::Result<hf::extend::RopeScaling, String> {
    hf::extend::RopeScaling::parse(s).map_err(|e| e.message().to_string())
}

fn to_usize(v: Option<u64>, what: &str) -> Result<Option<usize>> {
    v.map(|v| usize::try_from(v).map_err(|_| CliError::new(format!("{what} {v} is too large"))))
        .transpose()
}

/// The converters' storage for `--quant` and `--group-size`.
fn to_storage(quant: QuantArg, group: Option<usize>) -> Storage {
    match quant {
        QuantArg::F32 => Storage::F32,
        QuantArg::F16 => Storage::F16,
        QuantArg::Q8 => Storage::Q8 { group_size: group },
    }
}

/// Runs the subcommand.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let context = to_usize(args.context, "--context")?;
    let group = to_usize(args.group_size, "--group-size")?;
    if args.block_scales && args.quant != QuantArg::Q8 {
        bail!("--block-scales needs --quant q8");
    }
    if let Some(g) = group {
        if args.quant != QuantArg::Q8 {
            bail!("--group-size needs --quant q8");
        }
        if g % 4 != 0 {
            bail!("--group-size {g} is not a multiple of 4");
        }
    }
    let src = &args.src;
    let own_tokenizer = src.join("tokenizer.bin");
    let tokenizer = match &args.tokenizer {
        Some(p) => Some(files::read(p)?),
        None if src.is_dir() && own_tokenizer.is_file() => Some(files::read(&own_tokenizer)?),
        None => None,
    };
    if args.rope_scaling.is_some() && !src.is_dir() {
        bail!("--rope-scaling applies to a model directory (config.json + model.safetensors), not a llama2.c checkpoint");
    }
    let convert = |quant: QuantArg, tokenizer: Option<Vec<u8>>| -> Result<_> {
        if src.is_dir() {
            let opts = hf::Options {
                context,
                storage: to_storage(quant, group),
                tokenizer,
                rope_scaling: args.rope_scaling,
            };
            // The bar follows the written image's conversion, not the check's.
            let mut progress = Progress::new();
            let draw = quant == args.quant;
            let converted = hf::convert(src, &opts, &mut |done, total, label| {
                if draw {
                    progress.tick(done, total, label);
                }
            });
            if draw {
                progress.finish();
            }
            let (bytes, s) = converted
                .map_err(|e| CliError::from(e).context(format!("converting {}", src.display())))?;
            Ok((
                bytes,
                s.header,
                format!("Hugging Face {}", s.model_type),
                s.warnings,
            ))
        } else {
            let (bytes, header, version) = llama2c_image(src, quant, group, context, tokenizer)?;
            let v = match version {
                Version::Legacy => "v0",
                Version::V1 => "v1",
                Version::V2 { .. } => "v2",
            };
            Ok((bytes, header, format!("llama2.c {v}"), Vec::new()))
        }
    };
    let (bytes, header, what, warnings) = convert(args.quant, tokenizer)?;
    let bytes = if args.block_scales {
        microformer_convert::block_scales::with_block_scales(&bytes).map_err(|e| {
            CliError::runtime(format!("cannot add the block scales to the image: {e}"))
        })?
    } else {
        bytes
    };
    for w in &warnings {
        eprintln!("microformer: warning: {w}");
    }
    files::write_atomic(&args.output, &bytes)?;
    eprintln!(
        "microformer: wrote {} ({what}; {} bytes, {} layers, context {}, matrices {}{})",
        args.output.display(),
        bytes.len(),
        header.n_layers,
        header.seq_len,
        storage(&bytes)?,
        if header.has(microformer::image::FLAG_TOKENIZER) {
            ", tokenizer"
        } else {
            ""
        }
    );
    if args.quant != QuantArg::F32 && !args.no_check {
        let (reference, ..) = convert(QuantArg::F32, None)?;
        let a = agreement(&reference, &bytes, CHECK_POSITIONS)?;
        eprintln!(
            "microformer: check: top-1 agreement with the f32 image {}/{} = {:.2} % (teacher-forced on the f32 image's greedy tokens from BOS), largest logit difference {:.4}",
            a.agree,
            a.total,
            100.0 * a.rate(),
            a.worst
        );
        if a.rate() < AGREEMENT_WARNING {
            eprintln!(
                "microformer: warning: below {:.0} %: greedy output will drift from the f32 model's{}",
                100.0 * AGREEMENT_WARNING,
                if args.quant == QuantArg::Q8 {
                    "; --quant f16 keeps 11 significant bits per weight"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// Positions the agreement check covers at most.
pub const CHECK_POSITIONS: usize = 256;
/// Agreement below which the check warns.
pub const AGREEMENT_WARNING: f64 = 0.98;

/// "q8", "f16", "f32" or a mix such as "q8+f32": the storage of the image's matrices.
fn storage(bytes: &[u8]) -> Result<String> {
    use microformer::image::{DType, Image};
    let aligned = files::Aligned::new(bytes);
    let img = Image::parse(aligned.bytes())
        .map_err(|e| CliError::runtime(format!("the written image does not parse: {e}")))?;
    let mut kinds = Vec::new();
    for (kind, layer) in microformer::image::slots(img.header()) {
        if let Some(r) = img
            .record(kind, layer as usize)
            .filter(|_| kind.quantizable())
        {
            let name = match r.dtype {
                DType::Q8 => "q8",
                DType::F16 => "f16",
                DType::F32 => "f32",
                DType::U8 => "u8",
            };
            if !kinds.contains(&name) {
                kinds.push(name);
            }
        }
    }
    Ok(kinds.join("+"))
}

/// Top-1 agreement of one image with another over a token stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Positions whose arg-max logits agree.
    pub agree: usize,
    /// Positions compared.
    pub total: usize,
    /// Largest absolute logit difference.
    pub worst: f32,
}

impl Agreement {
    /// `agree / total`.
    pub fn rate(&self) -> f64 {
        self.agree as f64 / self.total.max(1) as f64
    }
}

/// The reference image generates greedily from BOS for up to `positions`
/// positions (its context at most, stopping when it produces BOS); the
/// candidate image is fed the same tokens; their arg-max logits are compared at
/// every position.
pub fn agreement(reference: &[u8], candidate: &[u8], positions: usize) -> Result<Agreement> {
    use microformer::image::Image;
    use microformer::model::{Model, Session};
    let (ra, ca) = (
        files::Aligned::new(reference),
        files::Aligned::new(candidate),
    );
    let open = |b| {
        Image::parse(b)
            .and_then(Model::new)
            .map_err(|e| CliError::runtime(format!("cannot open the image to check: {e}")))
    };
    let (rm, cm) = (open(ra.bytes())?, open(ca.bytes())?);
    let n = positions.min(rm.max_context()).min(cm.max_context());
    let bos = rm.image().header().bos_id;
    let mut arenas = (
        vec![0u8; rm.arena_bytes(n) + 3],
        vec![0u8; cm.arena_bytes(n) + 3],
    );
    let step_err = |e| CliError::runtime(format!("agreement check: {e}"));
    let mut rs = Session::new(&rm, &mut arenas.0, n).map_err(step_err)?;
    let mut cs = Session::new(&cm, &mut arenas.1, n).map_err(step_err)?;
    let mut a = Agreement {
        agree: 0,
        total: 0,
        worst: 0.0,
    };
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0
    };
    let mut token = bos;
    for _ in 0..n {
        let want = rs.step(token).map_err(step_err)?;
        let got = cs.step(token).map_err(step_err)?;
        let next = argmax(want);
        a.agree += usize::from(next == argmax(got));
        a.total += 1;
        for (x, y) in want.iter().zip(got) {
            a.worst = a.worst.max((x - y).abs());
        }
        token = next as u32;
        if token == bos {
            break;
        }
    }
    Ok(a)
}

/// Converts a llama2.c checkpoint file with [`microformer_convert::llama2c::convert()`],
/// phrasing its errors in the command's terms.
pub fn llama2c_image(
    path: &Path,
    quant: QuantArg,
    group: Option<usize>,
    context: Option<usize>,
    tokenizer: Option<Vec<u8>>,
) -> Result<(Vec<u8>, Header, Version)> {
    use microformer_convert::llama2c::Llama2cError as E;
    let data = files::read(path)?;
    let opts = llama2c::Options {
        storage: to_storage(quant, group),
        context,
        tokenizer: tokenizer.as_deref(),
    };
    let converted = llama2c::convert(&data, &opts).map_err(|e| match e {
        E::Checkpoint(e) => CliError::runtime(format!(
            "{}: neither a Hugging Face model directory nor a valid llama2.c checkpoint: {e}",
            path.display()
        )),
        E::Context { asked, max } => CliError::new(format!(
            "--context {asked} exceeds the checkpoint's context of {max} positions"
        )),
        E::GroupMismatch { asked, file } => CliError::new(format!(
            "--group-size {asked} differs from the v2 checkpoint's group size {file}"
        )),
        E::BadGroup {
            dim, default: true, ..
        } => CliError::new(format!(
            "no Q8 group size of a multiple of 4 divides dim {dim}: give --group-size"
        )),
        E::BadGroup { group_size, .. } => {
            CliError::new(format!("--group-size {group_size} is not a multiple of 4"))
        }
        E::Tokenizer { vocab_size, error } => CliError::runtime(format!(
            "the tokenizer does not fit the model's vocabulary of {vocab_size}: {error}"
        )),
        e @ E::TableTooLarge { .. } => CliError::new(format!("{e}: give a smaller --context")),
        E::Convert(e) => CliError::runtime(format!("cannot convert {}: {e}", path.display())),
    })?;
    let header = *microformer::image::Image::parse(files::Aligned::new(&converted.image).bytes())
        .map_err(|e| CliError::runtime(format!("the written image does not parse: {e}")))?
        .header();
    Ok((converted.image, header, converted.version))
}
