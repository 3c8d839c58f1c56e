//! `cargo xtask bench [--json] [--quick] [--quant f32|q8|f16] [--write]`: instructions per token under
//! QEMU, and the firmware's flash and RAM.
//!
//! Figures, not tests: nothing here asserts on speed.
//!
//! - Instructions: QEMU's `-icount shift=0` makes every instruction 1 ns of virtual time, and
//!   the firmware counts SysTick (the 25 MHz core clock of the MPS2 boards: 40 instructions a
//!   tick, wraps counted in its interrupt) from the first forward pass to the end of the
//!   generation loop (forward passes, sampling, decoding, the text written through
//!   semihosting); per token = that count / positions run. Greedy, empty prompt (BOS), as
//!   llama2.c's figures in DESIGN.md (`run -t 0 -n N`), except that a sampled BOS does not
//!   end the run (`stop=none`): every row runs all its positions (stories260K's Q8 greedy
//!   text reaches BOS after 165).
//! - Runs: aidreams260K (128 steps) and stories260K (200 and 512 steps), f32, q8 and f16, on
//!   the Cortex-M4F and the Cortex-M33, and q8 on the Cortex-M3; each image converted by the
//!   host tool (`microformer convert`, Q8_0 with export.py's group size) and embedded in
//!   flash (the integer rows' with `--block-scales`). `--quant Q` keeps the rows of one storage format. The q8 rows run once more with
//!   the int8 KV cache (`kv=q8`, the arena sized for it: DESIGN.md's footprint configuration).
//!   The firmware's arena covers the image's whole context.
//! - Kernels (`bench=kernels` on the firmware's command line): instructions per RoPE-rotated
//!   pair (f32 table, Q15 table, Q15 integer phases), per ALiBi bias row and per softmax row
//!   of 512 keys.
//! - Flash: the ELF's loaded sections, read from its section headers (vector table, code,
//!   read-only data with the model image, initialised data). RAM: the statics (`.data`,
//!   `.bss`: the session arena with its KV cache, the tokenizer index, the sampler's scratch)
//!   plus the stack's high-water mark, measured by painting (cortex-m-rt `paint-stack`; the
//!   firmware reports the deepest unpainted word).
//!
//! Output: a Markdown table on stdout (paste it as is), or with `--json`
//! `[{"core": …, "model": …, "quant": …, "kv": …, "steps": …, "instructions_per_token": …,
//! "flash_bytes": …, "ram_bytes": …}, …]`. `--write` also writes both into `docs/`
//! (`benchmarks.md`, `benchmarks.json`), the committed figures README.md's are checked
//! against (`readme_figures_are_the_committed_benchmarks`). `--quick` runs only the Cortex-M4F stories260K
//! f32 rows.

use std::fmt::Write as _;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::elf::{self, Section};
use crate::firmware::{build_firmware_for, convert_for, Arith, Kv, Quant, Settings};
use crate::install::ensure_tools;
use crate::qemu::run_qemu;
use crate::qemu_boards::{QemuBoard, M0_ON_AN385, M3, M33, M4F};
use crate::util::{models_dir, secs, work_dir};

/// What `cargo xtask bench` takes.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Print the rows as JSON instead of a Markdown table
    #[arg(long)]
    json: bool,
    /// Only the Cortex-M4F stories260K f32 rows
    #[arg(long)]
    quick: bool,
    /// Only the rows of this weight storage
    #[arg(long, value_enum)]
    quant: Option<Quant>,
    /// Also write the figures into the repository: `docs/benchmarks.md` (the tables) and
    /// `docs/benchmarks.json` (the rows), which README.md's figures are checked against
    /// (a full run only)
    #[arg(long, conflicts_with_all = ["quick", "quant"])]
    write: bool,
}

/// One measured row.
#[derive(Debug, Clone)]
struct Row {
    core: &'static str,
    model: &'static str,
    quant: Quant,
    kv: Kv,
    arith: Arith,
    steps: u32,
    positions: u64,
    instructions: u64,
    sections: Sections,
    stack: u64,
}

impl Row {
    fn per_token(&self) -> u64 {
        (self.instructions + self.positions / 2)
            .checked_div(self.positions)
            .unwrap_or(0)
    }

    fn ram(&self) -> u64 {
        self.sections.ram + self.stack
    }

    /// The row as `--json` prints it.
    fn json(&self) -> JsonRow {
        JsonRow {
            core: self.core,
            model: self.model,
            quant: self.quant.as_str(),
            kv: self.kv.as_str(),
            arith: self.arith.as_str(),
            steps: self.steps,
            instructions_per_token: self.per_token(),
            flash_bytes: self.sections.flash,
            ram_bytes: self.ram(),
        }
    }
}

/// A row of `--json`'s array (README and other tools read these names).
#[derive(Debug, Serialize)]
struct JsonRow {
    core: &'static str,
    model: &'static str,
    quant: &'static str,
    kv: &'static str,
    arith: &'static str,
    steps: u32,
    instructions_per_token: u64,
    flash_bytes: u64,
    ram_bytes: u64,
}

/// Bytes of an ELF's loaded sections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sections {
    /// Everything stored in flash: code, read-only data, `.data`'s initial values.
    flash: u64,
    /// `.text` (and the vector table).
    text: u64,
    /// `.rodata` (the model image lives here).
    rodata: u64,
    /// Statics in RAM (`.data`, `.bss`, `.uninit`).
    ram: u64,
}

impl Sections {
    /// Sums a firmware's allocated sections: those at or above `ram_origin` are RAM.
    fn of(sections: &[Section], ram_origin: u32) -> Sections {
        let mut s = Sections::default();
        for sec in sections {
            if !sec.nobits {
                s.flash += sec.size;
            }
            if sec.addr >= u64::from(ram_origin) {
                s.ram += sec.size;
            } else if sec.name.starts_with(".rodata") {
                s.rodata += sec.size;
            } else if !sec.nobits {
                s.text += sec.size;
            }
        }
        s
    }

    /// Reads the firmware `elf` built for `board`.
    fn of_elf(elf: &std::path::Path, board: &QemuBoard) -> Result<Sections, String> {
        let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let sections =
            elf::allocated_sections(&data).map_err(|e| format!("{}: {e}", elf.display()))?;
        Ok(Sections::of(&sections, board.ram_origin))
    }
}

/// `key=value` from the firmware's `figures:` line.
fn figure(log: &[String], key: &str) -> Result<u64, String> {
    let line = log
        .iter()
        .find(|l| l.contains("figures:"))
        .ok_or("the firmware printed no `figures:` line")?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key}= in {line:?}"))
}

/// A model the benchmarks run.
struct BenchModel {
    name: &'static str,
    file: &'static str,
    tokenizer: Option<&'static str>,
    steps: &'static [u32],
}

const AIDREAMS: BenchModel = BenchModel {
    name: "aidreams260K",
    file: "aidreams260K.bin",
    tokenizer: Some("aidreams260K.tok512.bin"),
    steps: &[128],
};
const STORIES: BenchModel = BenchModel {
    name: "stories260K",
    file: "stories260K.bin",
    tokenizer: None,
    steps: &[200, 512],
};

/// A kernel timing: name, unit of work, instructions per unit.
type Kernel = (String, String, String);
/// A core's kernel timings.
type CoreKernels = (&'static str, Vec<Kernel>);

/// A kernel timing line: `kernel: NAME | per UNIT | N instructions`.
fn kernel_lines(log: &[String]) -> Vec<Kernel> {
    log.iter()
        .filter_map(|l| {
            let rest = &l[l.find("kernel: ")? + 8..];
            let mut parts = rest.split(" | ");
            let name = parts.next()?.trim().to_owned();
            let per = parts.next()?.trim().trim_start_matches("per ").to_owned();
            let n = parts
                .next()?
                .trim()
                .trim_end_matches(" instructions")
                .to_owned();
            Some((name, per, n))
        })
        .collect()
}

/// One firmware the benchmarks build and run: a model converted to `quant`, on `board`,
/// its arena sized for a `kv` cache and a step of arithmetic `arith`.
type Planned = (&'static QemuBoard, &'static BenchModel, Quant, Kv, Arith);

/// The firmwares `cargo xtask bench` runs, in order: the Cortex-M4F, then the Cortex-M33,
/// each model in every storage format with an f32 KV cache and once more in q8 with the int8
/// cache, then the Cortex-M3 in q8 (`quick`: the Cortex-M4F stories260K f32 one alone);
/// `only` keeps those of one storage format.
fn plan(quick: bool, only: Option<Quant>) -> Vec<Planned> {
    let mut plan: Vec<Planned> = Vec::new();
    let float = Arith::Float;
    if quick {
        plan.push((M4F, &STORIES, Quant::F32, Kv::F32, float));
    } else {
        for board in [M4F, M33] {
            for model in [&AIDREAMS, &STORIES] {
                for quant in [Quant::F32, Quant::Q8, Quant::F16] {
                    plan.push((board, model, quant, Kv::F32, float));
                }
                plan.push((board, model, Quant::Q8, Kv::Q8, float));
                plan.push((board, model, Quant::Q8, Kv::Q8, Arith::Integer));
            }
        }
        for model in [&AIDREAMS, &STORIES] {
            plan.push((M3, model, Quant::Q8, Kv::F32, float));
            plan.push((M3, model, Quant::Q8, Kv::Q8, Arith::Integer));
        }
        plan.push((M0_ON_AN385, &AIDREAMS, Quant::Q8, Kv::Q8, Arith::Integer));
    }
    if let Some(q) = only {
        plan.retain(|&(_, _, quant, _, _)| quant == q);
    }
    plan
}

/// `cargo xtask bench [--json] [--quick] [--quant Q]`.
pub fn bench(args: BenchArgs) -> Result<(), String> {
    let start = Instant::now();
    ensure_tools()?;
    let models = models_dir();
    let work = work_dir()?;
    let mut rows = Vec::new();
    let mut kernels: Vec<CoreKernels> = Vec::new();
    for (board, model, quant, kv, arith) in plan(args.quick, args.quant) {
        let image = work.join(format!(
            "bench-{}-{}-{}.mfi",
            model.name,
            quant.as_str(),
            arith.as_str()
        ));
        convert_for(
            &models.join(model.file),
            model.tokenizer.map(|t| models.join(t)).as_deref(),
            quant,
            arith,
            &image,
        )?;
        let elf = build_firmware_for(board, &image, kv, arith, None)?;
        let sections = Sections::of_elf(&elf, board)?;
        for &steps in model.steps {
            let s = Settings {
                steps,
                temperature: 0.0,
                kv,
                arith,
                ..Settings::default()
            };
            // `stop=none`: a BOS does not end the run, every row runs all its positions.
            let cmdline = format!("stop=none {}", s.cmdline());
            let run = run_qemu(board, &elf, &cmdline, true, false)?;
            let row = Row {
                core: board.core,
                model: model.name,
                quant,
                kv,
                arith,
                steps,
                positions: figure(&run.log, "positions")?,
                instructions: figure(&run.log, "instructions")?,
                sections,
                stack: figure(&run.log, "stack_bytes")?,
            };
            eprintln!(
                "xtask: bench {} {} {} (KV {}, {}) {} steps: {} instructions/token",
                row.core,
                row.model,
                row.quant.as_str(),
                row.kv.as_str(),
                row.arith.as_str(),
                row.steps,
                row.per_token()
            );
            rows.push(row);
        }
        if !kernels.iter().any(|(c, _)| *c == board.core) {
            let run = run_qemu(board, &elf, "bench=kernels", true, false)?;
            kernels.push((board.core, kernel_lines(&run.log)));
        }
    }
    eprintln!("xtask: bench done ({})", secs(start.elapsed()));
    if args.write {
        let docs = crate::util::root().join("docs");
        std::fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
        let md = format!(
            "# Benchmarks\n\nWritten by `cargo xtask bench --write` (see README.md, Benchmarks); \
             do not edit.\n\n{}",
            markdown(&rows, &kernels)
        );
        for (name, text) in [
            ("benchmarks.md", md),
            ("benchmarks.json", json(&rows)? + "\n"),
        ] {
            let path = docs.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("xtask: wrote {}", path.display());
        }
    }
    if args.json {
        println!("{}", json(&rows)?);
    } else {
        print!("{}", markdown(&rows, &kernels));
    }
    Ok(())
}

/// The rows as `--json` prints them: an array of objects, one per row.
fn json(rows: &[Row]) -> Result<String, String> {
    let items: Vec<JsonRow> = rows.iter().map(Row::json).collect();
    serde_json::to_string_pretty(&items).map_err(|e| format!("cannot write the rows: {e}"))
}

/// `n` in millions: `3.46 M`.
fn millions(n: u64) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

/// `n` bytes in KiB: `12.5 KiB`.
fn kib(n: u64) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

/// The rows and the kernel timings as Markdown tables.
fn markdown(rows: &[Row], kernels: &[CoreKernels]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Instructions per token under QEMU (`-icount shift=0` + SysTick), greedy from BOS, \
         every position of the run averaged (all `steps` positions run); flash and RAM of that \
         firmware (`cargo xtask bench`):\n"
    );
    let _ = writeln!(
        s,
        "| core | model | weights | KV cache | arithmetic | steps | instructions/token | flash | RAM (statics + stack peak) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} (code {}, read-only data {}) | {} ({} + {}) |",
            r.core,
            r.model,
            r.quant.as_str(),
            r.kv.as_str(),
            r.arith.as_str(),
            r.steps,
            millions(r.per_token()),
            kib(r.sections.flash),
            kib(r.sections.text),
            kib(r.sections.rodata),
            kib(r.ram()),
            kib(r.sections.ram),
            kib(r.stack),
        );
    }
    if !kernels.is_empty() {
        let _ = writeln!(
            s,
            "\nKernels (`bench=kernels`), instructions per unit of work:\n"
        );
        let mut names: Vec<(String, String)> = Vec::new();
        for (_, ks) in kernels {
            for (n, per, _) in ks {
                if !names.iter().any(|(m, _)| m == n) {
                    names.push((n.clone(), per.clone()));
                }
            }
        }
        let cores: Vec<&str> = kernels.iter().map(|(c, _)| *c).collect();
        let _ = writeln!(s, "| kernel | per | {} |", cores.join(" | "));
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(cores.len()));
        for (n, per) in &names {
            let vals: Vec<String> = kernels
                .iter()
                .map(|(_, ks)| {
                    ks.iter()
                        .find(|(m, _, _)| m == n)
                        .map_or_else(|| "—".into(), |(_, _, v)| v.clone())
                })
                .collect();
            let _ = writeln!(s, "| {n} | {per} | {} |", vals.join(" | "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `instructions_per_token` of the committed float-step row `core model quant kv steps`.
    fn committed(rows: &[serde_json::Value], key: (&str, &str, &str, &str, u64)) -> u64 {
        committed_arith(rows, key, "float")
    }

    /// [`committed`] for a step of arithmetic `arith`.
    fn committed_arith(
        rows: &[serde_json::Value],
        key: (&str, &str, &str, &str, u64),
        arith: &str,
    ) -> u64 {
        rows.iter()
            .find(|r| {
                (r["core"].as_str(), r["model"].as_str(), r["quant"].as_str())
                    == (Some(key.0), Some(key.1), Some(key.2))
                    && r["kv"].as_str() == Some(key.3)
                    && r["steps"].as_u64() == Some(key.4)
                    && r["arith"].as_str().unwrap_or("float") == arith
            })
            .and_then(|r| r["instructions_per_token"].as_u64())
            .unwrap_or_else(|| panic!("docs/benchmarks.json has no {arith} row {key:?}"))
    }

    /// README.md's benchmark summary quotes `docs/benchmarks.json`, which
    /// `cargo xtask bench --write` writes: a figure that goes stale fails here.
    #[test]
    fn readme_figures_are_the_committed_benchmarks() {
        let root = crate::util::root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let json = std::fs::read_to_string(root.join("docs/benchmarks.json")).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let mut checked = 0;
        for (model, steps) in [
            ("aidreams260K", 128),
            ("stories260K", 200),
            ("stories260K", 512),
        ] {
            let label = format!("| {model}, {steps} greedy |");
            let line = readme
                .lines()
                .find(|l| l.starts_with(&label))
                .unwrap_or_else(|| panic!("README.md has no benchmark row {label}"));
            let cells: Vec<String> = line
                .split('|')
                .map(|c| c.trim().trim_matches('*').to_owned())
                .collect();
            // | model | llama2.c M4F | M4F f32 | M33 f32 | llama2.c M3 | M3 q8 | M3 integer |
            // M4F integer |
            let m4f = committed(&rows, ("cortex-m4f", model, "f32", "f32", steps));
            let m33 = committed(&rows, ("cortex-m33", model, "f32", "f32", steps));
            let m3 = committed(&rows, ("cortex-m3", model, "q8", "f32", steps));
            let m3i = committed_arith(&rows, ("cortex-m3", model, "q8", "q8", steps), "integer");
            let m4i = committed_arith(&rows, ("cortex-m4f", model, "q8", "q8", steps), "integer");
            assert_eq!(cells[3], millions(m4f), "{label} M4F");
            assert_eq!(cells[4], millions(m33), "{label} M33");
            assert_eq!(cells[6], millions(m3), "{label} M3");
            assert_eq!(cells[7], millions(m3i), "{label} M3 integer");
            assert_eq!(cells[8], millions(m4i), "{label} M4F integer");
            checked += 1;
        }
        let target = committed(&rows, ("cortex-m4f", "stories260K", "f32", "f32", 512));
        let spaced = target
            .to_string()
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            readme.contains(&format!("**{spaced}** instructions")),
            "README.md's target line does not quote {spaced}"
        );
        assert_eq!(checked, 3);
    }

    #[test]
    fn measures_the_same_rows() {
        let all = plan(false, None);
        assert_eq!(all.len(), 25);
        let rows: usize = all.iter().map(|(_, m, _, _, _)| m.steps.len()).sum();
        assert_eq!(rows, 37);
        let names: Vec<String> = all
            .iter()
            .map(|(b, m, q, k, a)| {
                format!(
                    "{} {} {} {} {}",
                    b.short,
                    m.name,
                    q.as_str(),
                    k.as_str(),
                    a.as_str()
                )
            })
            .collect();
        assert_eq!(
            names[..5],
            [
                "m4f aidreams260K f32 f32 float",
                "m4f aidreams260K q8 f32 float",
                "m4f aidreams260K f16 f32 float",
                "m4f aidreams260K q8 q8 float",
                "m4f aidreams260K q8 q8 integer"
            ]
        );
        assert_eq!(names[10], "m33 aidreams260K f32 f32 float");
        assert_eq!(
            names[20..].join(", "),
            "m3 aidreams260K q8 f32 float, m3 aidreams260K q8 q8 integer, \
             m3 stories260K q8 f32 float, m3 stories260K q8 q8 integer, \
             m0-an385 aidreams260K q8 q8 integer"
        );
        assert_eq!(plan(false, Some(Quant::Q8)).len(), 17);
        assert_eq!(plan(true, Some(Quant::Q8)).len(), 0);
        let quick = plan(true, None);
        assert_eq!(
            (quick[0].0, quick[0].1.name, quick.len()),
            (M4F, "stories260K", 1)
        );
    }

    #[test]
    fn sums_the_sections() {
        // .vector_table and .text (flash), .rodata (the image), .data (RAM, its initial
        // values in flash), .bss and .uninit (RAM only), .defmt (not allocated).
        let e = elf::test_elf(&[
            (".vector_table", 1, 2, 0, 0x400),
            (".text", 1, 6, 0x400, 40_000),
            (".rodata", 1, 2, 0xa000, 300_000),
            (".data", 1, 3, 0x3800_0000, 56),
            (".bss", 8, 3, 0x3800_0038, 180_000),
            (".uninit", 8, 3, 0x3802_0000, 1024),
            (".defmt", 1, 0, 0, 26),
        ]);
        let sections = elf::allocated_sections(&e).unwrap();
        assert_eq!(
            Sections::of(&sections, M33.ram_origin),
            Sections {
                flash: 0x400 + 40_000 + 300_000 + 56,
                text: 0x400 + 40_000,
                rodata: 300_000,
                ram: 56 + 180_000 + 1024,
            }
        );
    }

    #[test]
    fn json_rows_keep_their_names() {
        let row = Row {
            core: M4F.core,
            model: "stories260K",
            quant: Quant::Q8,
            kv: Kv::Q8,
            arith: Arith::Integer,
            steps: 200,
            positions: 200,
            instructions: 700_000_100,
            sections: Sections {
                flash: 500_000,
                text: 0,
                rodata: 0,
                ram: 200_000,
            },
            stack: 5_000,
        };
        let text = json(&[row]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "core": "cortex-m4f",
                "model": "stories260K",
                "quant": "q8",
                "kv": "q8",
                "arith": "integer",
                "steps": 200,
                "instructions_per_token": 3_500_001,
                "flash_bytes": 500_000,
                "ram_bytes": 205_000
            }])
        );
        // The fields in the order they always came.
        let at: Vec<usize> = [
            "core",
            "model",
            "quant",
            "kv",
            "arith",
            "steps",
            "instructions_per_token",
            "flash_bytes",
            "ram_bytes",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(json(&[]).unwrap(), "[]");
    }

    #[test]
    fn reads_the_firmware_lines() {
        let log = vec![
            "model: 1 bytes".to_owned(),
            "figures: positions=128 tokens=128 stopped=false instructions=123456 stack_bytes=99"
                .to_owned(),
            "kernel: softmax, 512 scores | per row | 1234.50 instructions".to_owned(),
        ];
        assert_eq!(figure(&log, "positions"), Ok(128));
        assert_eq!(figure(&log, "instructions"), Ok(123_456));
        assert!(figure(&log, "cycles").is_err());
        assert_eq!(
            kernel_lines(&log),
            vec![(
                "softmax, 512 scores".to_owned(),
                "row".to_owned(),
                "1234.50".to_owned()
            )]
        );
    }
}
