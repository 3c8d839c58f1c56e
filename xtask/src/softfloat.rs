//! `cargo xtask softfloat`, also a step of the on-target stage: proves that the integer
//! forward step (`microformer::model::Arith::Integer`) calls no soft-float routine on the
//! cores without an FPU, where every `f32`/`f64` operation would become one.
//!
//! What it checks: the QEMU Cortex-M3 board's firmware, built for `thumbv7m-none-eabi` (the
//! M3) and `thumbv6m-none-eabi` (Cortex-M0/M0+, the `M0_ON_AN385` build) with the Q8 image of
//! `models/rope`, an int8 KV cache and the integer step's arena. From every function symbol
//! whose demangled name contains `model::integer::forward` (its monomorphisations), no
//! soft-float or soft-double routine of compiler-builtins or libgcc naming may be reachable:
//! `__aeabi_f*`, `__aeabi_d*`, the integer-to-float conversions `__aeabi_{i,ui,l,ul}2{f,d}`,
//! the libgcc names (`__addsf3`, `__fixdfsi`, `__eqsf2`, … : one `__` word containing `sf` or
//! `df`) and anything under `compiler_builtins::float`. Integer helpers (`__aeabi_uidiv`,
//! `__aeabi_uldivmod`, `__aeabi_memcpy4`, …) are allowed and listed.
//!
//! How: the ELF is read with the `object` crate (function symbols with their addresses and
//! sizes, aliases at one address merged; the executable sections' bytes; the ARM mapping
//! symbols `$t`/`$d`, so that literal pools and jump tables are not decoded as code). Each
//! function's Thumb code is walked halfword by halfword, a 32-bit instruction recognised by
//! its first halfword's top five bits (`0b11101`, `0b11110`, `0b11111`), and its direct
//! branches decoded here (no disassembler needed): BL (T1), B.W (T4), B<cond>.W (T3), the
//! 16-bit B (T1, T2) and CBZ/CBNZ. A BL, or a branch whose target lies outside the function
//! (a tail call), is an edge of the call graph; the check walks it breadth first from the
//! integer step's symbols and names the path to any soft-float routine it reaches. As a
//! sanity check that the walker is not blind, the float step's
//! `microformer::model::session::forward` must reach soft-float routines on both cores.
//!
//! Limits: indirect calls and jumps through a register (`blx rN`, `bx rN` but `bx lr`; the
//! `core::fmt` trait objects of panic messages, function pointers) are not followed, only
//! counted: the report gives their number in the reachable set (when this was written, 3
//! `blx rN` on the M3 and 4 on the M0, all in `core::fmt::write`, which the panic paths
//! reach; these counts and the reachable sets were cross-checked once against
//! `llvm-objdump`'s disassembly). Jumps through `ldr pc` or a `pop {pc}` are not followed
//! either, nor branches into code no function symbol covers (counted as unresolved). Panic
//! paths are walked like any other call. On these cores a float operation is always a call,
//! so the direct call graph is where soft float shows; one reached only through a function
//! pointer or a trait object would escape the check. The `$d` regions need the symbol
//! table, which the boards' release profile keeps.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use object::elf::{FileHeader32, SHF_EXECINSTR, SHT_PROGBITS, SHT_SYMTAB, STT_FUNC};
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::LittleEndian;

use crate::firmware::{build_firmware_for, convert, Arith, Kv, Quant};
use crate::install::ensure_targets;
use crate::qemu_boards::{QemuBoard, M0_ON_AN385, M3};
use crate::util::{root, secs, work_dir};

/// The builds checked: the board row and how the report names the core.
const CORES: [(&QemuBoard, &str); 2] = [
    (M3, "Cortex-M3, thumbv7m-none-eabi"),
    (M0_ON_AN385, "Cortex-M0/M0+, thumbv6m-none-eabi"),
];

/// The integer step's entry point (its monomorphisations contain this).
const INTEGER_STEP: &str = "model::integer::forward";

/// The float step's entry point, which must reach soft-float routines on these cores.
const FLOAT_STEP: &str = "model::session::forward";

/// `cargo xtask softfloat`: installs the rustup targets if missing, then [`check`].
pub fn softfloat() -> Result<(), String> {
    ensure_targets()?;
    check().map(|_| ())
}

/// Builds the integer-step firmware for each of [`CORES`] and checks its call graph; returns
/// the time taken. Fails, naming the call path, if the integer step reaches a soft-float
/// routine, and if the float step reaches none (the walker would be blind).
pub fn check() -> Result<Duration, String> {
    let start = Instant::now();
    eprintln!("xtask: --- soft-float check of the integer step ---");
    let image = work_dir()?.join("softfloat-rope-q8.mfi");
    convert(&root().join("models").join("rope"), None, Quant::Q8, &image)?;
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for (board, core) in CORES {
        let elf = build_firmware_for(board, &image, Kv::Q8, Arith::Integer, None)?;
        // Read at once: the boards' target directory is shared with the other tasks.
        let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let program = Program::from_elf(&data).map_err(|e| format!("{}: {e}", elf.display()))?;
        let graph = CallGraph::of(&program);
        let integer = graph.reach(&program, INTEGER_STEP)?;
        let float = graph.reach(&program, FLOAT_STEP)?;
        lines.extend(integer.report(core));
        if float.soft_float.is_empty() {
            failures.push(format!(
                "{core}: the float step ({FLOAT_STEP}) reaches no soft-float routine: the \
                 call-graph walker is blind"
            ));
        } else {
            let names: Vec<&str> = float
                .soft_float
                .iter()
                .take(4)
                .map(|p| p[p.len() - 1].as_str())
                .collect();
            lines.push(format!(
                "{core}: sanity: float step reaches {} soft-float routines, e.g. {}",
                float.soft_float.len(),
                names.join(", ")
            ));
        }
        for path in &integer.soft_float {
            failures.push(format!(
                "{core}: the integer step calls soft float: {}",
                path.join(" → ")
            ));
        }
    }
    eprintln!("xtask: soft-float check of the integer step:");
    for l in &lines {
        eprintln!("xtask:   {l}");
    }
    if failures.is_empty() {
        eprintln!(
            "xtask: soft-float check passed: the integer step reaches no soft-float routine on \
             either core ({})",
            secs(start.elapsed())
        );
        Ok(start.elapsed())
    } else {
        for f in &failures {
            eprintln!("xtask: {f}");
        }
        Err(format!("soft-float check failed: {}", failures.join("; ")))
    }
}

/// Whether a routine of this (demangled) name does floating-point arithmetic in software:
/// compiler-builtins' and libgcc's soft-float and soft-double routines.
fn is_soft_float(name: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "__aeabi_f",
        "__aeabi_d",
        "__aeabi_i2f",
        "__aeabi_ui2f",
        "__aeabi_l2f",
        "__aeabi_ul2f",
        "__aeabi_i2d",
        "__aeabi_ui2d",
        "__aeabi_l2d",
        "__aeabi_ul2d",
    ];
    if PREFIXES.iter().any(|p| name.starts_with(p)) || name.starts_with("compiler_builtins::float")
    {
        return true;
    }
    // libgcc's names: one word after `__` (`__addsf3`, `__fixunsdfsi`, `__unordsf2`); the
    // words with an underscore (`__aeabi_uidiv`, `__defmt_…`) are not of that family.
    libgcc_word(name).is_some_and(|w| w.contains("sf") || w.contains("df"))
}

/// The word of a libgcc-style name `__word` (lowercase letters and digits), if it is one.
fn libgcc_word(name: &str) -> Option<&str> {
    let w = name.strip_prefix("__")?;
    let word = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    word.then_some(w)
}

/// Whether a routine of this (demangled) name is a compiler or C-library helper (integer
/// division, 64-bit shifts, memcpy, …); soft-float ones are tested first.
fn is_helper(name: &str) -> bool {
    name.starts_with("__aeabi_")
        || libgcc_word(name).is_some()
        || name.starts_with("compiler_builtins::")
        || ["memcpy", "memmove", "memset", "memcmp", "bcmp", "strlen"].contains(&name)
}

/// A function of the program: the merged symbols at one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Function {
    /// First byte (the Thumb bit of the symbol's value cleared).
    pub(crate) start: u32,
    /// One past the last byte.
    pub(crate) end: u32,
    /// Its names, demangled without the hash, aliases included.
    pub(crate) names: Vec<String>,
}

impl Function {
    /// The name the report prints: its `__aeabi_` one if it has one, else its first.
    pub(crate) fn name(&self) -> &str {
        self.names
            .iter()
            .find(|n| n.starts_with("__aeabi_"))
            .or(self.names.first())
            .map_or("?", String::as_str)
    }
}

/// What the walker needs of an ELF: functions, code bytes, data ranges.
#[derive(Debug, Default)]
pub(crate) struct Program {
    /// Sorted by start.
    pub(crate) functions: Vec<Function>,
    /// Executable sections: address and bytes.
    code: Vec<(u32, Vec<u8>)>,
    /// The ARM mapping symbols, sorted: address, and whether data (`$d`) starts there
    /// (else Thumb code, `$t`). Empty: all code.
    marks: Vec<(u32, bool)>,
}

impl Program {
    /// Reads a 32-bit little-endian ARM ELF (with its symbol table).
    pub(crate) fn from_elf(data: &[u8]) -> Result<Program, String> {
        let header = FileHeader32::<LittleEndian>::parse(data)
            .map_err(|e| format!("not a 32-bit little-endian ELF file ({e})"))?;
        let endian = header.endian().map_err(|e| e.to_string())?;
        let sections = header.sections(endian, data).map_err(|e| e.to_string())?;
        let mut program = Program::default();
        // Section index → its address range, for the code sections.
        let mut code_sections = BTreeMap::new();
        for (i, s) in sections.iter().enumerate() {
            if s.sh_flags(endian) & SHF_EXECINSTR == 0 || s.sh_type(endian) != SHT_PROGBITS {
                continue;
            }
            let bytes = s.data(endian, data).map_err(|e| e.to_string())?;
            let addr = s.sh_addr(endian);
            code_sections.insert(i, (addr, addr + bytes.len() as u32));
            program.code.push((addr, bytes.to_vec()));
        }
        if program.code.is_empty() {
            return Err("no executable section".into());
        }
        let symbols = sections
            .symbols(endian, data, SHT_SYMTAB)
            .map_err(|e| e.to_string())?;
        if symbols.is_empty() {
            return Err("no symbol table (stripped?)".into());
        }
        // Start → (largest size, names).
        let mut functions: BTreeMap<u32, (u32, Vec<String>)> = BTreeMap::new();
        for sym in symbols.iter() {
            let index = usize::from(sym.st_shndx(endian));
            if !code_sections.contains_key(&index) {
                continue;
            }
            let raw = symbols
                .symbol_name(endian, sym)
                .map_err(|e| e.to_string())?;
            let raw = String::from_utf8_lossy(raw);
            let value = sym.st_value(endian);
            if raw.starts_with("$t") || raw.starts_with("$d") {
                program.marks.push((value & !1, raw.starts_with("$d")));
            } else if sym.st_type() == STT_FUNC {
                let name = format!("{:#}", rustc_demangle::demangle(&raw));
                let f = functions.entry(value & !1).or_default();
                f.0 = f.0.max(sym.st_size(endian));
                if !f.1.contains(&name) {
                    f.1.push(name);
                }
            }
        }
        program.marks.sort_unstable();
        let starts: Vec<u32> = functions.keys().copied().collect();
        for (i, (start, (size, names))) in functions.into_iter().enumerate() {
            // A symbol without a size (assembly) runs to the next one or its section's end.
            let end = if size > 0 {
                start + size
            } else {
                let section_end = code_sections
                    .values()
                    .find(|(a, b)| (*a..*b).contains(&start))
                    .map_or(start, |r| r.1);
                starts
                    .get(i + 1)
                    .map_or(section_end, |&n| n.min(section_end))
            };
            program.functions.push(Function { start, end, names });
        }
        Ok(program)
    }

    /// Whether `addr` lies in data (a `$d` region).
    fn is_data(&self, addr: u32) -> bool {
        let i = self.marks.partition_point(|&(a, _)| a <= addr);
        i > 0 && self.marks[i - 1].1
    }

    /// The index of the function holding `addr`.
    pub(crate) fn function_at(&self, addr: u32) -> Option<usize> {
        let i = self.functions.partition_point(|f| f.start <= addr);
        (i > 0 && addr < self.functions[i - 1].end).then(|| i - 1)
    }

    /// The code bytes of `start..end` (clipped to its section), and where they start.
    pub(crate) fn bytes(&self, start: u32, end: u32) -> Option<&[u8]> {
        let (addr, bytes) = self
            .code
            .iter()
            .find(|(a, b)| (*a..*a + b.len() as u32).contains(&start))?;
        let from = (start - addr) as usize;
        let to = ((end - addr) as usize).min(bytes.len());
        bytes.get(from..to)
    }
}

/// A control transfer decoded from one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Branch {
    /// BL to this address.
    Call(u32),
    /// B (any form, CBZ/CBNZ) to this address.
    Jump(u32),
    /// `blx rN`.
    IndirectCall,
    /// `bx rN`, N ≠ lr.
    IndirectJump,
}

/// Whether a first halfword starts a 32-bit Thumb-2 instruction.
fn is_32bit(hw1: u16) -> bool {
    matches!(hw1 >> 11, 0b11101..=0b11111)
}

/// Sign-extends the low `bits` bits of `v`.
fn sign_extend(v: u32, bits: u32) -> i32 {
    ((v << (32 - bits)) as i32) >> (32 - bits)
}

/// The branch a 32-bit instruction at `pc` makes, if it is BL, B.W or B<cond>.W.
fn decode32(pc: u32, hw1: u16, hw2: u16) -> Option<Branch> {
    let (hw1, hw2) = (u32::from(hw1), u32::from(hw2));
    if hw1 & 0xF800 != 0xF000 {
        return None;
    }
    let s = (hw1 >> 10) & 1;
    let (j1, j2) = ((hw2 >> 13) & 1, (hw2 >> 11) & 1);
    let imm11 = hw2 & 0x7FF;
    // T4 (BL, B.W): I1 = NOT(J1 XOR S), I2 = NOT(J2 XOR S).
    let t4 = || {
        let (i1, i2) = (!(j1 ^ s) & 1, !(j2 ^ s) & 1);
        let imm = (s << 24) | (i1 << 23) | (i2 << 22) | ((hw1 & 0x3FF) << 12) | (imm11 << 1);
        pc.wrapping_add(4).wrapping_add_signed(sign_extend(imm, 25))
    };
    match hw2 & 0xD000 {
        0xD000 => Some(Branch::Call(t4())),
        0x9000 => Some(Branch::Jump(t4())),
        // T3: B<cond>.W; cond 0b111x encodes other instructions (MSR, MRS, hints, …).
        0x8000 if (hw1 >> 6) & 0xF < 0b1110 => {
            let imm = (s << 20) | (j2 << 19) | (j1 << 18) | ((hw1 & 0x3F) << 12) | (imm11 << 1);
            Some(Branch::Jump(
                pc.wrapping_add(4).wrapping_add_signed(sign_extend(imm, 21)),
            ))
        }
        _ => None,
    }
}

/// The branch a 16-bit instruction at `pc` makes, if it is B, CBZ/CBNZ, BLX rN or BX rN.
fn decode16(pc: u32, hw: u16) -> Option<Branch> {
    let hw = u32::from(hw);
    let target = |offset: i32| pc.wrapping_add(4).wrapping_add_signed(offset);
    if hw & 0xF000 == 0xD000 && (hw >> 8) & 0xF < 0b1110 {
        // T1: B<cond>; cond 0b1110 is UDF, 0b1111 SVC.
        Some(Branch::Jump(target(sign_extend((hw & 0xFF) << 1, 9))))
    } else if hw & 0xF800 == 0xE000 {
        Some(Branch::Jump(target(sign_extend((hw & 0x7FF) << 1, 12))))
    } else if hw & 0xF500 == 0xB100 {
        // CBZ, CBNZ: forward only, i:imm5:'0'.
        let imm = (((hw >> 9) & 1) << 6) | (((hw >> 3) & 0x1F) << 1);
        Some(Branch::Jump(target(imm as i32)))
    } else if hw & 0xFF87 == 0x4780 {
        Some(Branch::IndirectCall)
    } else if hw & 0xFF87 == 0x4700 && (hw >> 3) & 0xF != 14 {
        Some(Branch::IndirectJump)
    } else {
        None
    }
}

/// The branches of the Thumb code `bytes` at `start`, skipping the data regions of `program`
/// (at the address each instruction is at).
pub(crate) fn branches(program: &Program, start: u32, bytes: &[u8]) -> Vec<(u32, Branch)> {
    let halfword = |i: usize| {
        bytes
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(hw1) = halfword(i) {
        let pc = start + i as u32;
        if program.is_data(pc) {
            i += 2;
            continue;
        }
        if is_32bit(hw1) {
            let Some(hw2) = halfword(i + 2) else { break };
            if let Some(b) = decode32(pc, hw1, hw2) {
                out.push((pc, b));
            }
            i += 4;
        } else {
            if let Some(b) = decode16(pc, hw1) {
                out.push((pc, b));
            }
            i += 2;
        }
    }
    out
}

/// The direct call graph among the functions of a program.
#[derive(Debug, Default)]
pub(crate) struct CallGraph {
    /// Per function: the functions it calls or tail-calls.
    pub(crate) callees: Vec<BTreeSet<usize>>,
    /// Per function: its `blx rN`.
    indirect_calls: Vec<usize>,
    /// Per function: its `bx rN` (N ≠ lr).
    indirect_jumps: Vec<usize>,
    /// Per function: its direct branches to addresses no function covers.
    unresolved: Vec<usize>,
}

impl CallGraph {
    /// Decodes every function of `program`.
    pub(crate) fn of(program: &Program) -> CallGraph {
        let n = program.functions.len();
        let mut g = CallGraph {
            callees: vec![BTreeSet::new(); n],
            indirect_calls: vec![0; n],
            indirect_jumps: vec![0; n],
            unresolved: vec![0; n],
        };
        for (i, f) in program.functions.iter().enumerate() {
            let Some(bytes) = program.bytes(f.start, f.end) else {
                continue;
            };
            for (_, b) in branches(program, f.start, bytes) {
                let target = match b {
                    Branch::IndirectCall => {
                        g.indirect_calls[i] += 1;
                        continue;
                    }
                    Branch::IndirectJump => {
                        g.indirect_jumps[i] += 1;
                        continue;
                    }
                    Branch::Call(t) | Branch::Jump(t) => t,
                };
                // A branch within the function (BL is also ARMv6-M's long jump) is no edge.
                if (f.start..f.end).contains(&target) {
                    continue;
                }
                match program.function_at(target) {
                    Some(j) => {
                        g.callees[i].insert(j);
                    }
                    None => g.unresolved[i] += 1,
                }
            }
        }
        g
    }

    /// What the functions whose names contain `entry` reach (themselves included); fails
    /// if there is none.
    fn reach(&self, program: &Program, entry: &str) -> Result<Reach, String> {
        let roots: Vec<usize> = (0..program.functions.len())
            .filter(|&i| program.functions[i].names.iter().any(|n| n.contains(entry)))
            .collect();
        if roots.is_empty() {
            return Err(format!(
                "no function symbol named like `{entry}` in the ELF"
            ));
        }
        // Breadth first: the shortest path to each function.
        let mut parent: BTreeMap<usize, Option<usize>> = BTreeMap::new();
        let mut queue = VecDeque::new();
        for &r in &roots {
            parent.insert(r, None);
            queue.push_back(r);
        }
        let mut order = Vec::new();
        while let Some(i) = queue.pop_front() {
            order.push(i);
            // A soft-float routine is reported, not walked into.
            if program.functions[i].names.iter().any(|n| is_soft_float(n)) {
                continue;
            }
            for &j in &self.callees[i] {
                if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(j) {
                    e.insert(Some(i));
                    queue.push_back(j);
                }
            }
        }
        let path = |mut i: usize| {
            let mut p = vec![program.functions[i].name().to_owned()];
            while let Some(Some(up)) = parent.get(&i) {
                i = *up;
                p.push(program.functions[i].name().to_owned());
            }
            p.reverse();
            p
        };
        let mut r = Reach {
            roots: roots.len(),
            functions: order.len(),
            ..Reach::default()
        };
        for &i in &order {
            let f = &program.functions[i];
            if f.names.iter().any(|n| is_soft_float(n)) {
                r.soft_float.push(path(i));
            } else if f.names.iter().any(|n| is_helper(n)) {
                r.helpers.push(f.name().to_owned());
            }
            r.indirect_calls += self.indirect_calls[i];
            r.indirect_jumps += self.indirect_jumps[i];
            r.unresolved += self.unresolved[i];
        }
        r.helpers.sort();
        Ok(r)
    }
}

/// What an entry point reaches.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reach {
    /// Functions it starts from.
    roots: usize,
    /// Functions reachable (the roots included).
    functions: usize,
    /// Soft-float routines reached, each as the call path from a root to it.
    soft_float: Vec<Vec<String>>,
    /// Integer helpers reached, by name.
    helpers: Vec<String>,
    /// `blx rN` in the reachable functions.
    indirect_calls: usize,
    /// `bx rN` (N ≠ lr) in the reachable functions.
    indirect_jumps: usize,
    /// Direct branches to no function, in the reachable functions.
    unresolved: usize,
}

impl Reach {
    /// The report's lines for the integer step on `core`.
    fn report(&self, core: &str) -> Vec<String> {
        let helpers = if self.helpers.is_empty() {
            "none".to_owned()
        } else {
            self.helpers.join(", ")
        };
        vec![
            format!(
                "{core}: integer step ({} symbols `{INTEGER_STEP}`) reaches {} functions, {} \
                 soft-float routines; integer helpers reached: {helpers}",
                self.roots,
                self.functions,
                self.soft_float.len()
            ),
            format!(
                "{core}: not followed: {} indirect calls (blx rN), {} indirect jumps (bx rN), \
                 {} direct branches to no function symbol",
                self.indirect_calls, self.indirect_jumps, self.unresolved
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BL (`call`) or B.W (T4) from `pc` to `to`.
    fn t4(pc: u32, to: u32, call: bool) -> [u8; 4] {
        let imm = to.wrapping_sub(pc + 4);
        let s = (imm >> 24) & 1;
        let (i1, i2) = ((imm >> 23) & 1, (imm >> 22) & 1);
        let (j1, j2) = ((!(i1 ^ s)) & 1, (!(i2 ^ s)) & 1);
        let hw1 = 0xF000 | (s << 10) | ((imm >> 12) & 0x3FF);
        let hw2 =
            if call { 0xD000 } else { 0x9000 } | (j1 << 13) | (j2 << 11) | ((imm >> 1) & 0x7FF);
        let mut b = [0; 4];
        b[..2].copy_from_slice(&(hw1 as u16).to_le_bytes());
        b[2..].copy_from_slice(&(hw2 as u16).to_le_bytes());
        b
    }

    fn words(b: &[u8]) -> (u16, u16) {
        (
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        )
    }

    #[test]
    fn decodes_what_llvm_objdump_shows() {
        // Instructions of a real qemu-m3 ELF, as `llvm-objdump -d` printed them.
        let d32 = |pc, b: [u8; 4]| {
            let (h1, h2) = words(&b);
            assert!(is_32bit(h1));
            decode32(pc, h1, h2)
        };
        let d16 = |pc, b: [u8; 2]| {
            let h = u16::from_le_bytes(b);
            assert!(!is_32bit(h));
            decode16(pc, h)
        };
        assert_eq!(
            d32(0x400, [0x05, 0xf0, 0x26, 0xfe]),
            Some(Branch::Call(0x6050))
        );
        assert_eq!(
            d32(0xef4, [0xff, 0xf7, 0x50, 0xbb]),
            Some(Branch::Jump(0x598))
        );
        // beq.w
        assert_eq!(
            d32(0x81a, [0x00, 0xf0, 0x9a, 0x85]),
            Some(Branch::Jump(0x1352))
        );
        assert_eq!(d16(0x410, [0xfb, 0xe7]), Some(Branch::Jump(0x40a)));
        // bne, cbz r1
        assert_eq!(d16(0x4ae, [0xfa, 0xd1]), Some(Branch::Jump(0x4a6)));
        assert_eq!(d16(0x548, [0x61, 0xb3]), Some(Branch::Jump(0x5a4)));
        assert_eq!(d16(0x3dc0, [0x90, 0x47]), Some(Branch::IndirectCall));
        assert_eq!(d16(0x3da0, [0x18, 0x47]), Some(Branch::IndirectJump));
        // bx lr, udf, svc, push {r7, lr}
        for hw in [0x4770, 0xDE00, 0xDF00, 0xB580] {
            assert_eq!(decode16(0x1000, hw), None, "{hw:#x}");
        }
        // msr (T3's cond 0b1110), and a 32-bit instruction of another kind (ldr.w).
        assert_eq!(decode32(0x1000, 0xF380, 0x8808), None);
        assert_eq!(decode32(0x1000, 0xF8D0, 0x1004), None);
        // The encoder below round-trips, both ways and far.
        for (pc, to) in [(0x1000, 0x1f_0000), (0x20_0000, 0x400), (0x8000, 0x8004)] {
            let (h1, h2) = words(&t4(pc, to, true));
            assert_eq!(decode32(pc, h1, h2), Some(Branch::Call(to)));
            let (h1, h2) = words(&t4(pc, to, false));
            assert_eq!(decode32(pc, h1, h2), Some(Branch::Jump(to)));
        }
    }

    fn function(start: u32, end: u32, name: &str) -> Function {
        Function {
            start,
            end,
            names: vec![name.to_owned()],
        }
    }

    /// `root` calls `helper`, tail-calls `middle` (B.W), which calls `__aeabi_fmul` and has a
    /// `blx r3`; a literal pool in `root` holds the bytes of a BL to `__aeabi_dadd`, which
    /// must not count. `leaf` (a 16-bit B to `__aeabi_uidiv`) uses no float.
    fn synthetic() -> Program {
        let mut code = vec![0u8; 0x500];
        let mut put = |at: u32, b: &[u8]| {
            let i = (at - 0x1000) as usize;
            code[i..i + b.len()].copy_from_slice(b);
        };
        put(0x1000, &0xB580u16.to_le_bytes()); // push {r7, lr}
        put(0x1002, &t4(0x1002, 0x1300, true)); // bl __aeabi_uidiv
        put(0x1006, &t4(0x1006, 0x1100, false)); // b.w middle
        put(0x100a, &t4(0x100a, 0x1400, true)); // in the literal pool
        put(0x1100, &t4(0x1100, 0x1200, true)); // bl __aeabi_fmul
        put(0x1104, &0x4798u16.to_le_bytes()); // blx r3
        put(0x1106, &0x4770u16.to_le_bytes()); // bx lr
        let b = 0xE000 | (((0x1300u32 - (0x1180 + 4)) >> 1) & 0x7FF) as u16;
        put(0x1180, &b.to_le_bytes()); // b __aeabi_uidiv
        Program {
            functions: vec![
                function(0x1000, 0x1010, "demo::root"),
                function(0x1100, 0x1108, "demo::middle"),
                function(0x1180, 0x1184, "demo::leaf"),
                function(0x1200, 0x1210, "__aeabi_fmul"),
                function(0x1300, 0x1310, "__aeabi_uidiv"),
                function(0x1400, 0x1410, "__aeabi_dadd"),
            ],
            code: vec![(0x1000, code)],
            marks: vec![(0x1000, false), (0x100a, true), (0x1010, false)],
        }
    }

    #[test]
    fn the_walker_finds_soft_float() {
        let p = synthetic();
        let g = CallGraph::of(&p);
        let r = g.reach(&p, "demo::root").unwrap();
        assert_eq!(
            r,
            Reach {
                roots: 1,
                functions: 4,
                soft_float: vec![vec![
                    "demo::root".to_owned(),
                    "demo::middle".to_owned(),
                    "__aeabi_fmul".to_owned()
                ]],
                helpers: vec!["__aeabi_uidiv".to_owned()],
                indirect_calls: 1,
                indirect_jumps: 0,
                unresolved: 0,
            }
        );
        let leaf = g.reach(&p, "demo::leaf").unwrap();
        assert!(leaf.soft_float.is_empty());
        assert_eq!((leaf.functions, leaf.helpers.len()), (2, 1));
        assert!(g.reach(&p, "demo::absent").is_err());
        // Without the mapping symbols, the literal pool's bytes are read as a call.
        let blind = Program {
            marks: Vec::new(),
            ..synthetic()
        };
        let g = CallGraph::of(&blind);
        let r = g.reach(&blind, "demo::root").unwrap();
        assert_eq!(r.soft_float.len(), 2);
    }

    #[test]
    fn soft_float_names() {
        for n in [
            "__aeabi_fmul",
            "__aeabi_dadd",
            "__aeabi_f2iz",
            "__aeabi_i2f",
            "__aeabi_ui2f",
            "__aeabi_l2f",
            "__aeabi_ul2d",
            "__addsf3",
            "__divdf3",
            "__fixsfsi",
            "__floatunsisf",
            "__unordsf2",
            "__extendsfdf2",
            "__fixunsdfdi",
            "compiler_builtins::float::mul::__mulsf3",
        ] {
            assert!(is_soft_float(n), "{n}");
        }
        for n in [
            "__aeabi_uidiv",
            "__aeabi_idivmod",
            "__aeabi_lmul",
            "__aeabi_llsl",
            "__aeabi_uldivmod",
            "__aeabi_memcpy4",
            "__udivmoddi4",
            "__clzsi2",
            "__defmt_default_timestamp",
            "memcpy",
            "microformer::model::integer::forward",
        ] {
            assert!(!is_soft_float(n), "{n}");
        }
        assert!(is_helper("__aeabi_uidiv") && is_helper("__udivmoddi4") && is_helper("memset"));
        assert!(!is_helper("microformer::num::int::isqrt"));
    }
}
