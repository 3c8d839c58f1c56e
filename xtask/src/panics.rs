//! `cargo xtask panics [--write]`, also a step of the on-target stage: counts the panic sites
//! left on the firmware's hot paths, from the release ELF of the QEMU Cortex-M4F board, and
//! fails if a count rose above the committed one (`docs/panics.json`): the count only falls.
//!
//! Why a count and not a link-time proof: the `panic-never` technique (a `#[panic_handler]`
//! that references an undefined symbol, so that the link fails while any panic stays
//! reachable) needs every panic path of the whole program removed, the firmware's own
//! start-up, command line and logging included, and its error is only "undefined symbol",
//! without saying where. The call graph gives the same answer per function: where the count
//! of a surface is 0, that surface cannot panic (no direct path to a panic routine), which is
//! what the link-time check would prove for it.
//!
//! What it counts: the firmware built with the f32 image of `models/rope` (an f32 KV cache,
//! the float step; the integer step is compiled in too, the arithmetic being chosen at run
//! time). The call graph is `softfloat.rs`'s (direct BL/B.W/B/CBZ edges decoded from the
//! Thumb code, aliases merged, literal pools skipped). A *panic routine* is a function of
//! `core` whose name says it panics (`core::panicking::*`, `core::option::unwrap_failed`,
//! `core::option::expect_failed`, `core::result::unwrap_failed`, the `…_fail` routines of
//! slice and string indexing, `copy_from_slice`'s length check). A *panic site* is one
//! branch instruction (call or tail call) from a function to a panic routine. Per surface
//! (its entry points given by name below), every function reachable from the entry points
//! without going through a panic routine is visited, and its sites are counted; the report
//! names the functions with sites and the entry points that were inlined into their callers
//! (their code is then counted in the caller, which is not on the surface and so not here).
//!
//! `PANICS_DEBUG=1 cargo xtask panics` also prints every site's address and the panic routine
//! it branches to (`llvm-addr2line -i -e <elf> <address>` names the source line).
//!
//! Limits: as `softfloat.rs`'s walker (calls through registers are not followed); a site
//! the optimiser merged (one `bl core::panicking::panic_bounds_check` shared by several
//! checks) counts once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::firmware::{build_firmware_for, convert, Arith, Kv, Quant};
use crate::install::ensure_targets;
use crate::qemu_boards::M4F;
use crate::softfloat::{branches, Branch, CallGraph, Program};
use crate::util::{root, secs, work_dir};

/// The surfaces: a name, and the entry points (substrings of demangled function names).
const SURFACES: [(&str, &[&str]); 5] = [
    ("float step", &["microformer::model::session::forward"]),
    ("integer step", &["microformer::model::integer::forward"]),
    (
        "sampling",
        &[
            "microformer::sampler::sample",
            "microformer::sampler::Sampler",
        ],
    ),
    ("decoding", &["microformer::tokenizer::Tokenizer::"]),
    (
        "image parse + model",
        &[
            "microformer::image::Image::parse",
            "microformer::image::Image::tensor",
            "microformer::model::weights::LayerWeights::from_image",
            "microformer::model::weights::Matrix::from_image",
            "microformer::model::view::Model::new",
        ],
    ),
];

/// `cargo xtask panics` arguments.
#[derive(Debug, Args)]
pub struct PanicsArgs {
    /// Write the counts to docs/panics.json and docs/panics.md and the README's table
    /// (instead of checking them against the committed ones)
    #[arg(long)]
    write: bool,
}

/// `cargo xtask panics`: installs the rustup targets if missing, then counts, and checks or
/// writes.
pub fn panics(args: PanicsArgs) -> Result<(), String> {
    ensure_targets()?;
    run(args.write).map(|_| ())
}

/// The on-target stage's step: count and check against the committed counts.
pub fn check() -> Result<Duration, String> {
    run(false)
}

/// Where the counts are committed.
fn json_path() -> PathBuf {
    root().join("docs").join("panics.json")
}

fn run(write: bool) -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: --- panic sites on the hot paths (Cortex-M4F firmware) ---");
    let image = work_dir()?.join("panics-rope-f32.mfi");
    convert(
        &root().join("models").join("rope"),
        None,
        Quant::F32,
        &image,
    )?;
    let elf = build_firmware_for(M4F, &image, Kv::F32, Arith::Float, None)?;
    let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let program = Program::from_elf(&data).map_err(|e| format!("{}: {e}", elf.display()))?;
    let counts = count(&program);
    let json = to_json(&counts);
    for s in &counts {
        eprintln!(
            "xtask:   {}: {} panic sites in {} reachable functions{}",
            s.name,
            s.total(),
            s.functions,
            if s.inlined.is_empty() {
                String::new()
            } else {
                format!(" (inlined entry points: {})", s.inlined.join(", "))
            }
        );
        for (f, n) in &s.sites {
            eprintln!("xtask:     {n:>3}  {f}");
        }
    }
    if write {
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
        std::fs::write(json_path(), text).map_err(|e| format!("docs/panics.json: {e}"))?;
        let md = markdown(&counts);
        std::fs::write(root().join("docs").join("panics.md"), &md)
            .map_err(|e| format!("docs/panics.md: {e}"))?;
        update_readme(&readme_table(&counts))?;
        eprintln!(
            "xtask: wrote docs/panics.json, docs/panics.md and the README's table ({})",
            secs(start.elapsed())
        );
        return Ok(start.elapsed());
    }
    let committed = committed_totals()?;
    let mut rose = Vec::new();
    for s in &counts {
        match committed.get(s.name) {
            Some(&c) if s.total() > c => rose.push(format!("{}: {} > {c}", s.name, s.total())),
            Some(&c) if s.total() < c => eprintln!(
                "xtask: {}: {} panic sites, fewer than the committed {c}: run `cargo xtask \
                 panics --write` to record it",
                s.name,
                s.total()
            ),
            Some(_) => {}
            None => rose.push(format!("{}: not in docs/panics.json", s.name)),
        }
    }
    let readme = std::fs::read_to_string(root().join("README.md")).map_err(|e| e.to_string())?;
    if !readme.contains(&readme_table_of_json(&committed_json()?)?) {
        rose.push("the README's panic table differs from docs/panics.json".into());
    }
    if rose.is_empty() {
        eprintln!(
            "xtask: panic sites: no count above the committed one ({})",
            secs(start.elapsed())
        );
        Ok(start.elapsed())
    } else {
        Err(format!(
            "panic sites rose (or the record is stale): {}",
            rose.join("; ")
        ))
    }
}

/// One surface's count.
#[derive(Debug, Default, PartialEq, Eq)]
struct Surface {
    name: &'static str,
    /// Entry points found as symbols.
    roots: usize,
    /// Entry points with no symbol of their own (inlined).
    inlined: Vec<String>,
    /// Functions reachable without passing through a panic routine (roots included).
    functions: usize,
    /// Functions with sites: name → sites.
    sites: BTreeMap<String, usize>,
}

impl Surface {
    fn total(&self) -> usize {
        self.sites.values().sum()
    }
}

/// Whether a (demangled, hash-free) name is a panic routine of `core`.
fn is_panic(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("core::") else {
        return name == "rust_begin_unwind" || name.starts_with("panic_probe::");
    };
    rest.starts_with("panicking::") || rest.contains("_fail") || rest.contains("panic_")
}

/// Counts the sites of every surface.
fn count(program: &Program) -> Vec<Surface> {
    let graph = CallGraph::of(program);
    let panic: BTreeSet<usize> = (0..program.functions.len())
        .filter(|&i| program.functions[i].names.iter().any(|n| is_panic(n)))
        .collect();
    SURFACES
        .iter()
        .map(|&(name, entries)| {
            let mut s = Surface {
                name,
                ..Surface::default()
            };
            let mut seen = BTreeSet::new();
            let mut queue = VecDeque::new();
            for e in entries {
                let roots: Vec<usize> = (0..program.functions.len())
                    .filter(|&i| program.functions[i].names.iter().any(|n| n.contains(e)))
                    .filter(|i| !panic.contains(i))
                    .collect();
                if roots.is_empty() {
                    s.inlined.push((*e).to_owned());
                }
                s.roots += roots.len();
                for r in roots {
                    if seen.insert(r) {
                        queue.push_back(r);
                    }
                }
            }
            while let Some(i) = queue.pop_front() {
                let f = &program.functions[i];
                let sites = program
                    .bytes(f.start, f.end)
                    .map(|b| branches(program, f.start, b))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(pc, b)| match b {
                        Branch::Call(t) | Branch::Jump(t) if !(f.start..f.end).contains(&t) => {
                            program.function_at(t).map(|j| (pc, t, j))
                        }
                        _ => None,
                    })
                    .filter(|(_, _, j)| panic.contains(j))
                    .inspect(|(pc, t, j)| {
                        if std::env::var_os("PANICS_DEBUG").is_some() {
                            eprintln!(
                                "site in {} at {pc:#x} -> {t:#x} {}",
                                f.name(),
                                program.functions[*j].name()
                            );
                        }
                    })
                    .count();
                if sites > 0 {
                    *s.sites.entry(f.name().to_owned()).or_default() += sites;
                }
                for &j in &graph.callees[i] {
                    if !panic.contains(&j) && seen.insert(j) {
                        queue.push_back(j);
                    }
                }
            }
            s.functions = seen.len();
            s
        })
        .collect()
}

fn to_json(counts: &[Surface]) -> Value {
    let surfaces: Vec<Value> = counts
        .iter()
        .map(|s| {
            json!({
                "surface": s.name,
                "panic_sites": s.total(),
                "functions_reached": s.functions,
                "inlined_entry_points": s.inlined,
                "sites_by_function": s.sites,
            })
        })
        .collect();
    json!({
        "firmware": "boards/qemu-m4f, release, thumbv7em-none-eabihf, models/rope f32 image",
        "surfaces": surfaces,
    })
}

fn committed_json() -> Result<Value, String> {
    let text = std::fs::read_to_string(json_path()).map_err(|e| {
        format!("docs/panics.json: {e} (run `cargo xtask panics --write` to record the counts)")
    })?;
    serde_json::from_str(&text).map_err(|e| format!("docs/panics.json: {e}"))
}

/// Surface → committed total.
fn committed_totals() -> Result<BTreeMap<String, usize>, String> {
    let json = committed_json()?;
    let surfaces = json["surfaces"]
        .as_array()
        .ok_or("docs/panics.json: no `surfaces` array")?;
    surfaces
        .iter()
        .map(|s| {
            let name = s["surface"]
                .as_str()
                .ok_or("docs/panics.json: a surface without name")?;
            let n = s["panic_sites"]
                .as_u64()
                .ok_or("docs/panics.json: a surface without `panic_sites`")?;
            Ok((name.to_owned(), n as usize))
        })
        .collect()
}

/// The README's table rows from the committed JSON.
fn readme_table_of_json(json: &Value) -> Result<String, String> {
    let mut out = String::from(
        "| surface | panic sites | functions reached | functions with sites |\n|---|---|---|---|\n",
    );
    for s in json["surfaces"]
        .as_array()
        .ok_or("docs/panics.json: no `surfaces` array")?
    {
        let by = s["sites_by_function"]
            .as_object()
            .ok_or("docs/panics.json: no `sites_by_function`")?;
        let names: Vec<String> = by
            .iter()
            .map(|(f, n)| format!("`{}` ({n})", short(f)))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            s["surface"].as_str().unwrap_or("?"),
            s["panic_sites"],
            s["functions_reached"],
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(out)
}

fn readme_table(counts: &[Surface]) -> String {
    readme_table_of_json(&to_json(counts)).unwrap_or_default()
}

/// A function name without its crate path's `microformer::` and generic noise.
fn short(name: &str) -> String {
    name.replace("microformer::", "")
}

fn markdown(counts: &[Surface]) -> String {
    let mut md = String::from(
        "# Panic sites on the hot paths\n\nGenerated by `cargo xtask panics --write` (see \
         `xtask/src/panics.rs` for the method): branch instructions to a panic routine of \
         `core`, in the functions each surface reaches, in the release firmware of the QEMU \
         Cortex-M4F board. `cargo xtask test` fails if a count rises.\n\n",
    );
    md.push_str(&readme_table(counts));
    for s in counts {
        md.push_str(&format!(
            "\n## {}\n\n{} sites, {} functions reached from {} entry points",
            s.name,
            s.total(),
            s.functions,
            s.roots
        ));
        if !s.inlined.is_empty() {
            md.push_str(&format!(
                "; inlined into their callers (not counted here): {}",
                s.inlined
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        md.push_str(".\n\n");
        for (f, n) in &s.sites {
            md.push_str(&format!("- {n} `{f}`\n"));
        }
    }
    md
}

const BEGIN: &str = "<!-- panics:begin (cargo xtask panics --write) -->\n";
const END: &str = "<!-- panics:end -->";

fn update_readme(table: &str) -> Result<(), String> {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!(
            "README.md has no `{}`…`{END}` block for the panic table",
            BEGIN.trim_end()
        ));
    };
    let new = format!("{}{BEGIN}{table}{}", &text[..a], &text[b..]);
    std::fs::write(&path, new).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_routines_by_name() {
        for n in [
            "core::panicking::panic_bounds_check",
            "core::panicking::panic_fmt",
            "core::option::unwrap_failed",
            "core::result::unwrap_failed",
            "core::option::expect_failed",
            "core::slice::index::slice_index_fail",
            "core::slice::copy_from_slice_impl::len_mismatch_fail",
            "core::str::slice_error_fail_rt",
            "core::panicking::panic_const::panic_const_div_by_zero",
            "rust_begin_unwind",
        ] {
            assert!(is_panic(n), "{n}");
        }
        for n in [
            "core::fmt::write",
            "core::slice::sort::stable::drift::sort",
            "microformer::model::session::forward",
            "microformer::attn::panic_free",
            "__aeabi_memcpy",
        ] {
            assert!(!is_panic(n), "{n}");
        }
    }
}
