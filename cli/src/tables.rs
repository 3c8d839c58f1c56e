//! `microformer tables`: print the position tables microformer would precompute
//! for a Hugging Face `config.json`, as JSON, Rust or a C header.
//!
//! | model types | key | table |
//! |---|---|---|
//! | llama, qwen2, mistral, phi, phi3, gpt_neox, gptj | `rope` | `inv_freq`, attention factor, cos/sin rows (already multiplied by the attention factor) for the requested positions |
//! | bloom, mpt | `alibi_slopes` | one slope per head |
//! | t5, mt5 | `t5_buckets` | bucket of every relative position `-R..=R` |
//! | xglm, distilbert | `sinusoidal` | the absolute embedding table: XGLM's split layout built in float32 as Hugging Face and the converter build it (`construction: "float32"`), DistilBERT's interleaved one exact (`"exact"`) |

use std::fmt::Write as _;
use std::path::PathBuf;

use microformer::pos::rope::RopeTable;
use microformer::pos::{alibi, sinusoidal, t5};

use crate::error::{bail, CliError, Result};
use crate::output::{self, Format};
use microformer_convert::hf::config::{
    AlibiSpec, HfConfig, PositionScheme, RopeSpec, SinusoidalLayout, SinusoidalSpec, T5Spec,
};

/// Most rows/entries a table may have (keeps a typo from filling the disk).
pub const MAX_ENTRIES: usize = 1 << 26;

/// Arguments of `microformer tables`.
#[derive(Debug, Clone, clap::Args)]
pub struct TablesArgs {
    /// A Hugging Face config.json.
    pub config: PathBuf,
    /// RoPE positions: a list like `0,5,100`, ranges `a..b` (b excluded), or both (`0..8,65535`).
    #[arg(long, value_name = "LIST", value_parser = parse_positions, allow_negative_numbers = true)]
    pub positions: Option<Positions>,
    /// Sequence length that dynamic NTK and LongRoPE choose their frequencies for [default: max_position_embeddings].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub seq_len: Option<u64>,
    /// Rows of the sinusoidal table [default: as the model builds it].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub num_positions: Option<usize>,
    /// T5: relative positions -R..=R.
    #[arg(
        long,
        value_name = "R",
        default_value_t = 128,
        allow_negative_numbers = true
    )]
    pub relative_range: u32,
    /// T5: causal (decoder) buckets instead of bidirectional.
    #[arg(long)]
    pub causal: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// A list of positions from `--positions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions(pub Vec<u32>);

/// Parses `0,5,100`, `0..8` (exclusive end) and mixes like `0..8,100,65535`.
pub fn parse_positions(s: &str) -> std::result::Result<Positions, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in position list \"{s}\""));
        }
        let num = |t: &str| -> std::result::Result<u32, String> {
            t.trim()
                .parse::<u32>()
                .map_err(|e| format!("bad position \"{t}\": {e}"))
        };
        if let Some((a, b)) = item.split_once("..") {
            let (a, b) = (num(a)?, num(b)?);
            if b <= a {
                return Err(format!("empty range \"{item}\" (the end is excluded)"));
            }
            if out.len() + (b - a) as usize > MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} positions"));
            }
            out.extend(a..b);
        } else {
            out.push(num(item)?);
        }
    }
    Ok(Positions(out))
}

/// RoPE tables.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTables {
    /// The spec they come from.
    pub spec: RopeSpec,
    /// Sequence length used for dynamic/LongRoPE.
    pub seq_len: usize,
    /// `inv_freq`, one per pair (f64 maths, rounded once).
    pub inv_freq: Vec<f32>,
    /// Attention factor (already multiplied into cos/sin).
    pub attention_factor: f32,
    /// Positions, one row each.
    pub positions: Vec<u32>,
    /// cos rows, row-major `[position][pair]`.
    pub cos: Vec<f32>,
    /// sin rows, row-major `[position][pair]`.
    pub sin: Vec<f32>,
}

impl RopeTables {
    /// Pairs per row (`rotary_dim / 2`).
    pub fn pairs(&self) -> usize {
        self.spec.rotary_dim / 2
    }
}

/// ALiBi slopes.
#[derive(Debug, Clone, PartialEq)]
pub struct AlibiTables {
    /// The spec they come from.
    pub spec: AlibiSpec,
    /// One slope per head.
    pub slopes: Vec<f32>,
}

/// T5 buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct T5Tables {
    /// The spec they come from.
    pub spec: T5Spec,
    /// Bidirectional (encoder) or causal (decoder).
    pub bidirectional: bool,
    /// Relative position of `buckets[0]` (`-R`).
    pub relative_position_from: i64,
    /// Bucket of each relative position `-R..=R`.
    pub buckets: Vec<usize>,
}

/// A sinusoidal table.
#[derive(Debug, Clone, PartialEq)]
pub struct SinusoidalTables {
    /// The spec it comes from.
    pub spec: SinusoidalSpec,
    /// Rows.
    pub num_positions: usize,
    /// Row-major `[position][dim]`.
    pub table: Vec<f32>,
}

/// The tables for one model.
#[derive(Debug, Clone, PartialEq)]
pub enum Tables {
    /// RoPE.
    Rope(RopeTables),
    /// ALiBi.
    Alibi(AlibiTables),
    /// T5.
    T5(T5Tables),
    /// Sinusoidal.
    Sinusoidal(SinusoidalTables),
}

/// Runs the subcommand: prints the tables on stdout.
pub fn run(args: &TablesArgs) -> Result<()> {
    let cfg = HfConfig::load(&args.config)?;
    let tables = compute(&cfg, args)?;
    let name = args.config.display().to_string();
    let text = match args.format {
        Format::Json => to_json(&name, cfg.model_type.name(), &tables),
        Format::Rust => to_rust(&name, cfg.model_type.name(), &tables),
        Format::C => to_c(&name, cfg.model_type.name(), &tables),
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        // The reader stopped early (`| head`): not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => bail!("cannot write the output: {e}"),
    }
}

/// Computes the tables of a parsed config.
pub fn compute(cfg: &HfConfig, args: &TablesArgs) -> Result<Tables> {
    match cfg.position_scheme()? {
        PositionScheme::Rope(spec) => rope(spec, args).map(Tables::Rope),
        PositionScheme::Alibi(spec) => alibi_tables(spec).map(Tables::Alibi),
        PositionScheme::T5(spec) => t5_tables(spec, args).map(Tables::T5),
        PositionScheme::Sinusoidal(spec) => sinusoidal_tables(spec, args).map(Tables::Sinusoidal),
        PositionScheme::Learned { n_positions } => bail!(
            "model_type {} learns its {n_positions} absolute position embeddings: they are weights, there is no table to precompute",
            cfg.model_type.name()
        ),
    }
}

fn rope(spec: RopeSpec, args: &TablesArgs) -> Result<RopeTables> {
    let seq_len = match args.seq_len {
        Some(n) => usize::try_from(n).map_err(|_| CliError::new("--seq-len is too large"))?,
        None => spec.max_position_embeddings,
    };
    let positions = match &args.positions {
        Some(p) => p.0.clone(),
        None => (0..8).collect(),
    };
    let cfg = spec.config();
    let rope_type = spec.scaling.name();
    let lib = |e: microformer::Error| CliError::from(e).context(format!("rope ({rope_type})"));
    cfg.validate().map_err(lib)?;
    let pairs = cfg.pairs();
    if pairs == 0 {
        bail!("rope: rotary dimension is 0");
    }
    if positions.len().saturating_mul(pairs) > MAX_ENTRIES {
        bail!(
            "rope: {} positions × {pairs} pairs is too many entries",
            positions.len()
        );
    }
    let mut inv = vec![0f64; pairs];
    cfg.inv_freqs(seq_len, &mut inv).map_err(lib)?;
    let attention_factor = cfg.attention_factor(seq_len);
    let mut cos = vec![0f32; positions.len() * pairs];
    let mut sin = vec![0f32; positions.len() * pairs];
    for ((&p, c), s) in positions
        .iter()
        .zip(cos.chunks_mut(pairs))
        .zip(sin.chunks_mut(pairs))
    {
        let rows = RopeTable::fill(&cfg, seq_len, p as usize, c, s).map_err(lib)?;
        if rows != 1 {
            bail!("rope: table fill returned {rows} rows for position {p}, expected 1");
        }
    }
    let inv_freq: Vec<f32> = inv.iter().map(|&x| x as f32).collect();
    let attention_factor = attention_factor as f32;
    output::ensure_finite("rope.inv_freq", &inv_freq)?;
    output::ensure_finite("rope.attention_factor", &[attention_factor])?;
    output::ensure_finite("rope.cos", &cos)?;
    output::ensure_finite("rope.sin", &sin)?;
    Ok(RopeTables {
        spec,
        seq_len,
        inv_freq,
        attention_factor,
        positions,
        cos,
        sin,
    })
}

fn alibi_tables(spec: AlibiSpec) -> Result<AlibiTables> {
    if spec.n_heads > MAX_ENTRIES {
        bail!("alibi: {} heads is too many", spec.n_heads);
    }
    let mut slopes = vec![0f32; spec.n_heads];
    alibi::slopes(spec.rule, spec.n_heads, &mut slopes)
        .map_err(|e| CliError::from(e).context("alibi"))?;
    output::ensure_finite("alibi_slopes", &slopes)?;
    Ok(AlibiTables { spec, slopes })
}

fn t5_tables(spec: T5Spec, args: &TablesArgs) -> Result<T5Tables> {
    let bidirectional = !args.causal;
    let nb = spec.num_buckets;
    // HF's `_relative_position_bucket`: half the buckets per direction when
    // bidirectional, half of those exact; the rest log-spaced up to max_distance.
    let per_side = if bidirectional { nb / 2 } else { nb };
    let max_exact = per_side / 2;
    if max_exact == 0 {
        bail!(
            "t5: relative_attention_num_buckets = {nb} is too small (needs at least {} {})",
            if bidirectional { 4 } else { 2 },
            if bidirectional {
                "when bidirectional"
            } else {
                "when causal"
            }
        );
    }
    if spec.max_distance <= max_exact {
        bail!(
            "t5: relative_attention_max_distance = {} must exceed the {max_exact} exact buckets",
            spec.max_distance
        );
    }
    let config = t5::T5Buckets::new(bidirectional, nb, spec.max_distance).map_err(|e| {
        CliError::from(e).context(format!(
            "t5 (relative_attention_num_buckets {nb}, relative_attention_max_distance {})",
            spec.max_distance
        ))
    })?;
    if args.relative_range as usize > MAX_ENTRIES / 2 {
        bail!(
            "t5: --relative-range {} is too large (at most {})",
            args.relative_range,
            MAX_ENTRIES / 2
        );
    }
    let r = i64::from(args.relative_range);
    let buckets: Vec<usize> = (-r..=r).map(|rel| config.bucket(rel)).collect();
    if let Some(b) = buckets.iter().find(|&&b| b >= nb) {
        bail!("t5: bucket {b} outside 0..{nb}");
    }
    Ok(T5Tables {
        spec,
        bidirectional,
        relative_position_from: -r,
        buckets,
    })
}

fn sinusoidal_tables(spec: SinusoidalSpec, args: &TablesArgs) -> Result<SinusoidalTables> {
    let num_positions = args.num_positions.unwrap_or(spec.default_num_positions);
    if spec.dim == 0 {
        bail!("sinusoidal: embedding dimension is 0");
    }
    if num_positions == 0 {
        bail!("sinusoidal: --num-positions is 0");
    }
    let len = num_positions
        .checked_mul(spec.dim)
        .filter(|&n| n <= MAX_ENTRIES)
        .ok_or_else(|| {
            CliError::new(format!(
                "sinusoidal: {num_positions} rows × {} dims is too many entries",
                spec.dim
            ))
        })?;
    let mut table = vec![0f32; len];
    let lib = |e: microformer::Error| CliError::from(e).context("sinusoidal");
    match spec.layout {
        // XGLM's table as the converter stores it in the image (and Hugging Face
        // builds it): float32 frequencies and angles.
        SinusoidalLayout::Split if spec.float32 => {
            sinusoidal::fill_split_float32(num_positions, spec.dim, spec.padding_idx, &mut table)
                .map_err(lib)?
        }
        SinusoidalLayout::Split => {
            sinusoidal::fill_split(num_positions, spec.dim, spec.padding_idx, &mut table)
                .map_err(lib)?
        }
        SinusoidalLayout::Interleaved => {
            sinusoidal::fill_interleaved(num_positions, spec.dim, &mut table).map_err(lib)?
        }
    }
    output::ensure_finite("sinusoidal.table", &table)?;
    Ok(SinusoidalTables {
        spec,
        num_positions,
        table,
    })
}

/// The tables as a JSON object.
pub fn to_json(config_name: &str, model_type: &str, tables: &Tables) -> String {
    use output::{f32_list, f32_repr, int_list, json_matrix, json_str};
    let mut o = String::from("{\n");
    let _ = writeln!(o, "  \"config\": {},", json_str(config_name));
    let _ = writeln!(o, "  \"model_type\": {},", json_str(model_type));
    match tables {
        Tables::Rope(t) => {
            let s = &t.spec;
            o.push_str("  \"rope\": {\n");
            let _ = writeln!(o, "    \"rope_type\": {},", json_str(s.scaling.name()));
            let _ = writeln!(o, "    \"layout\": {},", json_str(s.layout.name()));
            let _ = writeln!(o, "    \"theta\": {},", f64_json(s.theta));
            let _ = writeln!(o, "    \"head_dim\": {},", s.head_dim);
            let _ = writeln!(o, "    \"rotary_dim\": {},", s.rotary_dim);
            let _ = writeln!(
                o,
                "    \"max_position_embeddings\": {},",
                s.max_position_embeddings
            );
            let _ = writeln!(o, "    \"seq_len\": {},", t.seq_len);
            let _ = writeln!(o, "    \"inv_freq\": {},", f32_list(&t.inv_freq));
            let _ = writeln!(
                o,
                "    \"attention_factor\": {},",
                f32_repr(t.attention_factor)
            );
            let _ = writeln!(o, "    \"positions\": {},", int_list(&t.positions));
            let _ = writeln!(o, "    \"cos\": {},", json_matrix(&t.cos, t.pairs(), 4));
            let _ = writeln!(o, "    \"sin\": {}", json_matrix(&t.sin, t.pairs(), 4));
            o.push_str("  }\n");
        }
        Tables::Alibi(t) => {
            let _ = writeln!(o, "  \"n_heads\": {},", t.spec.n_heads);
            let _ = writeln!(o, "  \"alibi_slopes\": {}", f32_list(&t.slopes));
        }
        Tables::T5(t) => {
            o.push_str("  \"t5_buckets\": {\n");
            let _ = writeln!(o, "    \"bidirectional\": {},", t.bidirectional);
            let _ = writeln!(o, "    \"num_buckets\": {},", t.spec.num_buckets);
            let _ = writeln!(o, "    \"max_distance\": {},", t.spec.max_distance);
            let _ = writeln!(
                o,
                "    \"relative_position_from\": {},",
                t.relative_position_from
            );
            let _ = writeln!(o, "    \"buckets\": {}", int_list(&t.buckets));
            o.push_str("  }\n");
        }
        Tables::Sinusoidal(t) => {
            o.push_str("  \"sinusoidal\": {\n");
            let _ = writeln!(o, "    \"layout\": {},", json_str(t.spec.layout.name()));
            let _ = writeln!(o, "    \"dim\": {},", t.spec.dim);
            match t.spec.padding_idx {
                Some(p) => {
                    let _ = writeln!(o, "    \"padding_idx\": {p},");
                }
                None => o.push_str("    \"padding_idx\": null,\n"),
            }
            let _ = writeln!(
                o,
                "    \"construction\": {},",
                json_str(construction(&t.spec))
            );
            let _ = writeln!(o, "    \"num_positions\": {},", t.num_positions);
            let _ = writeln!(o, "    \"table\": {}", json_matrix(&t.table, t.spec.dim, 4));
            o.push_str("  }\n");
        }
    }
    o.push_str("}\n");
    o
}

/// An f64 config parameter in JSON (shortest f64 round trip).
fn f64_json(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        String::from("null")
    }
}

/// Smallest unsigned Rust/C integer type holding `0..n`.
fn bucket_types(num_buckets: usize) -> (&'static str, &'static str) {
    if num_buckets <= 1 << 8 {
        ("u8", "uint8_t")
    } else if num_buckets <= 1 << 16 {
        ("u16", "uint16_t")
    } else {
        ("u32", "uint32_t")
    }
}

/// How a sinusoidal table is built: `"float32"` (PyTorch float32 frequencies and
/// angles, XGLM) or `"exact"` (f64 angles, rounded once).
fn construction(spec: &SinusoidalSpec) -> &'static str {
    if spec.float32 {
        "float32"
    } else {
        "exact"
    }
}

/// One line describing the tables, for the generated file's header comment.
fn describe(tables: &Tables) -> String {
    match tables {
        Tables::Rope(t) => format!(
            "RoPE {}: theta {:?}, head_dim {}, rotary_dim {}, {} pairs, seq_len {}; cos/sin already multiplied by the attention factor",
            t.spec.scaling.name(),
            t.spec.theta,
            t.spec.head_dim,
            t.spec.rotary_dim,
            t.spec.layout.name(),
            t.seq_len
        ),
        Tables::Alibi(t) => format!("ALiBi slopes for {} heads", t.spec.n_heads),
        Tables::T5(t) => format!(
            "T5 relative-position buckets ({}, {} buckets, max_distance {}) for relative positions {}..={}",
            if t.bidirectional { "bidirectional" } else { "causal" },
            t.spec.num_buckets,
            t.spec.max_distance,
            t.relative_position_from,
            -t.relative_position_from
        ),
        Tables::Sinusoidal(t) => format!(
            "sinusoidal position embeddings, {} layout ({} construction), {} rows x {} dims{}",
            t.spec.layout.name(),
            construction(&t.spec),
            t.num_positions,
            t.spec.dim,
            match t.spec.padding_idx {
                Some(p) => format!(", row {p} (padding) zero"),
                None => String::new(),
            }
        ),
    }
}

/// The tables as Rust items.
pub fn to_rust(config_name: &str, model_type: &str, tables: &Tables) -> String {
    use output::{f32_list, f32_repr, int_list, rust_matrix};
    let mut o = String::new();
    let _ = writeln!(
        o,
        "// Generated by `microformer tables` from {} (model_type {}).",
        output::comment_safe(config_name),
        model_type
    );
    let _ = writeln!(o, "// {}.", output::comment_safe(&describe(tables)));
    o.push('\n');
    match tables {
        Tables::Rope(t) => {
            let (n, h) = (t.positions.len(), t.pairs());
            let _ = writeln!(
                o,
                "/// Rotary dimension (the first `ROPE_ROTARY_DIM` dims of a head rotate)."
            );
            let _ = writeln!(
                o,
                "pub const ROPE_ROTARY_DIM: usize = {};",
                t.spec.rotary_dim
            );
            let _ = writeln!(o, "/// Pair layout: {}.", t.spec.layout.name());
            let _ = writeln!(
                o,
                "pub const ROPE_LAYOUT: &str = \"{}\";",
                t.spec.layout.name()
            );
            let _ = writeln!(
                o,
                "/// Attention factor (already multiplied into `ROPE_COS`/`ROPE_SIN`)."
            );
            let _ = writeln!(
                o,
                "pub const ROPE_ATTENTION_FACTOR: f32 = {};",
                f32_repr(t.attention_factor)
            );
            let _ = writeln!(o, "/// Inverse frequency of each pair.");
            let _ = writeln!(
                o,
                "pub const ROPE_INV_FREQ: [f32; {h}] = {};",
                f32_list(&t.inv_freq)
            );
            let _ = writeln!(o, "/// Position of each row of `ROPE_COS`/`ROPE_SIN`.");
            let _ = writeln!(
                o,
                "pub const ROPE_POSITIONS: [u32; {n}] = {};",
                int_list(&t.positions)
            );
            let _ = writeln!(
                o,
                "/// `attention_factor * cos(position * inv_freq)`, `[position][pair]`."
            );
            let _ = writeln!(
                o,
                "pub static ROPE_COS: [[f32; {h}]; {n}] = {};",
                rust_matrix(&t.cos, h)
            );
            let _ = writeln!(
                o,
                "/// `attention_factor * sin(position * inv_freq)`, `[position][pair]`."
            );
            let _ = writeln!(
                o,
                "pub static ROPE_SIN: [[f32; {h}]; {n}] = {};",
                rust_matrix(&t.sin, h)
            );
        }
        Tables::Alibi(t) => {
            let _ = writeln!(o, "/// ALiBi slope of each head.");
            let _ = writeln!(
                o,
                "pub const ALIBI_SLOPES: [f32; {}] = {};",
                t.slopes.len(),
                f32_list(&t.slopes)
            );
        }
        Tables::T5(t) => {
            let (ty, _) = bucket_types(t.spec.num_buckets);
            let _ = writeln!(o, "/// Number of buckets.");
            let _ = writeln!(
                o,
                "pub const T5_NUM_BUCKETS: usize = {};",
                t.spec.num_buckets
            );
            let _ = writeln!(o, "/// Relative position (key - query) of `T5_BUCKETS[0]`.");
            let _ = writeln!(
                o,
                "pub const T5_RELATIVE_POSITION_FROM: i64 = {};",
                t.relative_position_from
            );
            let _ = writeln!(
                o,
                "/// Bucket of each relative position from `T5_RELATIVE_POSITION_FROM` on."
            );
            let _ = writeln!(
                o,
                "pub static T5_BUCKETS: [{ty}; {}] = {};",
                t.buckets.len(),
                int_list(&t.buckets)
            );
        }
        Tables::Sinusoidal(t) => {
            let _ = writeln!(o, "/// Position embedding of each row, `[position][dim]`.");
            let _ = writeln!(
                o,
                "pub static SINUSOIDAL: [[f32; {}]; {}] = {};",
                t.spec.dim,
                t.num_positions,
                rust_matrix(&t.table, t.spec.dim)
            );
        }
    }
    o
}

/// The tables as a C header.
pub fn to_c(config_name: &str, model_type: &str, tables: &Tables) -> String {
    use output::{c_f32_list, c_f32_repr, c_int_list, c_matrix};
    let guard = "MICROFORMER_TABLES_H";
    let mut o = String::new();
    let _ = writeln!(
        o,
        "/* Generated by `microformer tables` from {} (model_type {}).",
        output::comment_safe(config_name),
        model_type
    );
    let _ = writeln!(o, " * {}. */", output::comment_safe(&describe(tables)));
    let _ = writeln!(o, "#ifndef {guard}\n#define {guard}\n");
    let _ = writeln!(o, "#include <stdint.h>\n");
    match tables {
        Tables::Rope(t) => {
            let (n, h) = (t.positions.len(), t.pairs());
            let _ = writeln!(
                o,
                "#define MICROFORMER_ROPE_ROTARY_DIM {}",
                t.spec.rotary_dim
            );
            let _ = writeln!(o, "#define MICROFORMER_ROPE_PAIRS {h}");
            let _ = writeln!(o, "#define MICROFORMER_ROPE_NUM_POSITIONS {n}");
            let _ = writeln!(
                o,
                "#define MICROFORMER_ROPE_INTERLEAVED {}",
                u8::from(t.spec.layout == microformer_convert::hf::config::PairLayout::Interleaved)
            );
            let _ = writeln!(
                o,
                "#define MICROFORMER_ROPE_ATTENTION_FACTOR {}\n",
                c_f32_repr(t.attention_factor)
            );
            let _ = writeln!(
                o,
                "static const float microformer_rope_inv_freq[{h}] = {};",
                c_f32_list(&t.inv_freq)
            );
            let _ = writeln!(
                o,
                "static const uint32_t microformer_rope_positions[{n}] = {};",
                c_int_list(&t.positions)
            );
            let _ = writeln!(
                o,
                "static const float microformer_rope_cos[{n}][{h}] = {};",
                c_matrix(&t.cos, h)
            );
            let _ = writeln!(
                o,
                "static const float microformer_rope_sin[{n}][{h}] = {};",
                c_matrix(&t.sin, h)
            );
        }
        Tables::Alibi(t) => {
            let _ = writeln!(
                o,
                "#define MICROFORMER_ALIBI_NUM_HEADS {}\n",
                t.slopes.len()
            );
            let _ = writeln!(
                o,
                "static const float microformer_alibi_slopes[{}] = {};",
                t.slopes.len(),
                c_f32_list(&t.slopes)
            );
        }
        Tables::T5(t) => {
            let (_, cty) = bucket_types(t.spec.num_buckets);
            let _ = writeln!(
                o,
                "#define MICROFORMER_T5_NUM_BUCKETS {}",
                t.spec.num_buckets
            );
            let _ = writeln!(
                o,
                "#define MICROFORMER_T5_RELATIVE_POSITION_FROM ({})",
                t.relative_position_from
            );
            let _ = writeln!(
                o,
                "#define MICROFORMER_T5_NUM_RELATIVE_POSITIONS {}\n",
                t.buckets.len()
            );
            let _ = writeln!(
                o,
                "static const {cty} microformer_t5_buckets[{}] = {};",
                t.buckets.len(),
                c_int_list(&t.buckets)
            );
        }
        Tables::Sinusoidal(t) => {
            let _ = writeln!(o, "#define MICROFORMER_SINUSOIDAL_DIM {}", t.spec.dim);
            let _ = writeln!(
                o,
                "#define MICROFORMER_SINUSOIDAL_NUM_POSITIONS {}\n",
                t.num_positions
            );
            let _ = writeln!(
                o,
                "static const float microformer_sinusoidal[{}][{}] = {};",
                t.num_positions,
                t.spec.dim,
                c_matrix(&t.table, t.spec.dim)
            );
        }
    }
    let _ = writeln!(o, "\n#endif /* {guard} */");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_lists() {
        assert_eq!(parse_positions("0,5,100").unwrap().0, vec![0, 5, 100]);
        assert_eq!(parse_positions("0..3").unwrap().0, vec![0, 1, 2]);
        assert_eq!(
            parse_positions("0..2, 7 ,10..12").unwrap().0,
            vec![0, 1, 7, 10, 11]
        );
        assert!(parse_positions("").is_err());
        assert!(parse_positions("3..3").is_err());
        assert!(parse_positions("a").is_err());
        assert!(parse_positions("1,,2").is_err());
        assert!(parse_positions("-1").is_err());
    }
}
