//! `cargo xtask cycles [--json] [--write] [--steps N]`: **estimated** cycles per token on the
//! Cortex-M4F and the Cortex-M33, from QEMU's executed-instruction trace weighted by the
//! Technical Reference Manuals' cycle counts, with flash wait states as a parameter (0 and 5).
//!
//! An estimate, not a measurement; how it is made:
//!
//! - Trace. QEMU 7.2 as Debian ships it has no TCG plugins (no `libinsn.so`), so the trace
//!   comes from its logging: `-d in_asm,exec,nochain -D FILE`. `in_asm` prints the
//!   disassembly of every translated block once (the Thumb mnemonics through capstone), `exec`
//!   prints one `Trace` line per block executed (with `nochain` every execution goes through
//!   the main loop, so every one is logged), naming the block by its host code pointer. A
//!   block's instructions times its executions is the executed-instruction histogram. Two
//!   events of the log are undone or trimmed: `Stopped execution of TB chain` (the block was
//!   entered but exited before its first instruction: the `-icount` budget ran out or an
//!   interrupt is pending) and `cpu_io_recompile: rewound execution of TB to A` (a device
//!   access in mid-block: only the instructions before `A` ran, the rest runs again as new
//!   blocks). The run keeps `-icount shift=0`, so the firmware's own SysTick instruction count
//!   (its `figures:` line) comes from the same run and checks the histogram's total.
//! - Forward steps isolated by difference: each row runs twice, `N` and `2N` positions
//!   (greedy from BOS, `stop=none`, as `cargo xtask bench`), and histogram(2N) −
//!   histogram(N), divided by `N`, is positions `N+1..2N`: the forward step with the greedy
//!   sampling, the decoding and the text written (what `bench` counts per token). Boot, the
//!   self-check, the image check and the arena setup are the same in both runs and cancel.
//!   These are early positions (short attention), so the instruction counts are below
//!   `bench`'s averages over 200 or 512 positions.
//! - Weights: the classes' cycle counts in [`M4_TIMINGS`] (ARM DDI0439, the Cortex-M4 TRM:
//!   Table 3-1 and the load/store timing rules of §3.3, and the FPU's Table 7-1) plus:
//!   a pipeline refill `P` = 2 (the TRM's range is 1–3) for every non-sequential block
//!   transition seen in the trace (taken branches, calls, returns, exception entries; a
//!   conditional branch that falls through costs its 1 cycle only); one cycle less for a
//!   single load (or register-offset store) right after a single `LDR` whose result it does
//!   not use as an address (the TRM's pipelined `LDR`); one cycle more for a load or store
//!   whose address register the instruction before (data processing) wrote (the TRM's AGU
//!   stall, no forwarding path). The Cortex-M33 TRM (ARM 100230) publishes no per-instruction
//!   cycle table of that kind, so the M33 rows use the same counts (as LLVM's scheduling model
//!   does for `cortex-m33`): they differ from the M4F rows only by the code the compiler emits
//!   for ARMv8-M.
//! - Flash wait states `ws`: `+ws` per non-sequential transition (the refill fetches from
//!   flash; sequential fetches are assumed hidden by the prefetch buffer; no instruction
//!   cache, no ART-style accelerator). QEMU's trace carries no data addresses, so which loads
//!   read flash is unknown; a separate column adds `ws` per 16-byte flash line of the model
//!   image, as if every weight were streamed from flash once per token with no data cache
//!   (image bytes / 16 lines).
//! - Not modelled: FPU result latencies and interlocks beyond the table's issue counts (a
//!   `VDIV`'s 14 cycles counted in full, though integer work may overlap it), `IT` folding,
//!   the divider's operand-dependent time (7 cycles, the middle of 2–12), exception stacking,
//!   bus contention and SRAM wait states, unaligned 32-bit instruction fetches, caches.
//!
//! Rows: stories260K (`../shared/models`, else the project's `models/rope`, said so) in f32
//! weights + f32 KV + float step, Q8 + q8 KV + float step and Q8 + q8 KV + integer step, on the
//! Cortex-M4F and the Cortex-M33. Output: the method and a Markdown table (instructions per
//! token from the same runs, estimated cycles per token at 0 and 5 wait states, cycles per
//! instruction), the per-class histogram and the cycle table; `--json` the same as JSON;
//! `--write` writes `docs/cycles.md` and `docs/cycles.json`. Traces go under the xtask work
//! directory and are deleted once parsed (an 8-position trace is about 0.5 GB).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::firmware::{build_firmware_for, convert_for, Arith, Kv, Quant, Settings};
use crate::install::ensure_tools;
use crate::qemu_boards::{QemuBoard, M33, M4F};
use crate::util::{models_dir, root, secs, to_stderr, work_dir};

/// What `cargo xtask cycles` takes.
#[derive(Debug, Clone, Args)]
pub struct CyclesArgs {
    /// Print the rows as JSON instead of Markdown
    #[arg(long)]
    json: bool,
    /// Also write docs/cycles.md and docs/cycles.json
    #[arg(long)]
    write: bool,
    /// Positions of the shorter traced run (the longer runs twice as many; per token = the
    /// difference / N)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=128))]
    steps: u32,
}

/// Flash wait states the estimates are given at.
const WAIT_STATES: [u32; 2] = [0, 5];

/// Pipeline refill `P` of a taken branch: DDI0439 Table 3-1 gives "1 to 3 depending on the
/// alignment and width of the target instruction, and whether the processor manages to
/// speculate the address early"; 2, the middle.
const REFILL: u32 = 2;

/// Bytes of one flash line for the weight-streaming column (a 128-bit flash interface, as
/// the STM32F4's; no data cache).
const FLASH_LINE_BYTES: u64 = 16;

// ---------------------------------------------------------------------------------------
// Instruction classes

/// What an instruction costs, as the TRMs' tables group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    /// Data processing: moves, add/subtract, logic, compares, shifts, extends, bit fields,
    /// saturation, SIMD add/subtract.
    Alu,
    /// Multiplies and multiply-accumulates (32 and 64 bits, DSP).
    Mul,
    /// `SDIV`, `UDIV`.
    Div,
    /// Single loads (`LDR`, `LDRB`, `LDRH`, `LDRSB`, `LDRSH`, `LDREX`).
    Load,
    /// `LDRD`.
    LoadDouble,
    /// `LDM`, `POP`.
    LoadMultiple,
    /// Single stores.
    Store,
    /// `STRD`.
    StoreDouble,
    /// `STM`, `PUSH`.
    StoreMultiple,
    /// `B`, `B<cond>`, `BL`, `BX`, `BLX`, `CBZ`, `CBNZ`.
    Branch,
    /// `TBB`, `TBH`.
    TableBranch,
    /// `IT` blocks' heads.
    It,
    /// `DSB`, `DMB`, `ISB`.
    Barrier,
    /// `MRS`, `MSR`, `CPS`, `NOP`, `BKPT`, `SVC`, hints.
    System,
    /// FP add, subtract, multiply, negate, absolute, compare, convert, register moves.
    FpAlu,
    /// FP multiply-accumulate (chained and fused).
    FpMac,
    /// `VDIV`, `VSQRT`.
    FpDivSqrt,
    /// `VMOV` between FP and core registers.
    FpMovCore,
    /// `VMRS`, `VMSR`.
    FpStatus,
    /// `VLDR`.
    FpLoad,
    /// `VSTR`.
    FpStore,
    /// `VLDM`, `VPOP`.
    FpLoadMultiple,
    /// `VSTM`, `VPUSH`.
    FpStoreMultiple,
    /// Anything not recognised (1 cycle; listed on stderr).
    Other,
}

/// Every class, in table order.
const CLASSES: [Class; 24] = [
    Class::Alu,
    Class::Mul,
    Class::Div,
    Class::Load,
    Class::LoadDouble,
    Class::LoadMultiple,
    Class::Store,
    Class::StoreDouble,
    Class::StoreMultiple,
    Class::Branch,
    Class::TableBranch,
    Class::It,
    Class::Barrier,
    Class::System,
    Class::FpAlu,
    Class::FpMac,
    Class::FpDivSqrt,
    Class::FpMovCore,
    Class::FpStatus,
    Class::FpLoad,
    Class::FpStore,
    Class::FpLoadMultiple,
    Class::FpStoreMultiple,
    Class::Other,
];

impl Class {
    /// The JSON key.
    fn key(self) -> &'static str {
        match self {
            Class::Alu => "alu",
            Class::Mul => "mul",
            Class::Div => "div",
            Class::Load => "load",
            Class::LoadDouble => "load_double",
            Class::LoadMultiple => "load_multiple",
            Class::Store => "store",
            Class::StoreDouble => "store_double",
            Class::StoreMultiple => "store_multiple",
            Class::Branch => "branch",
            Class::TableBranch => "table_branch",
            Class::It => "it",
            Class::Barrier => "barrier",
            Class::System => "system",
            Class::FpAlu => "fp_alu",
            Class::FpMac => "fp_mac",
            Class::FpDivSqrt => "fp_div_sqrt",
            Class::FpMovCore => "fp_mov_core",
            Class::FpStatus => "fp_status",
            Class::FpLoad => "fp_load",
            Class::FpStore => "fp_store",
            Class::FpLoadMultiple => "fp_load_multiple",
            Class::FpStoreMultiple => "fp_store_multiple",
            Class::Other => "other",
        }
    }

    /// As the Markdown tables name it.
    fn label(self) -> &'static str {
        match self {
            Class::Alu => "ALU (data processing)",
            Class::Mul => "multiply, MAC",
            Class::Div => "SDIV/UDIV",
            Class::Load => "load (LDR*)",
            Class::LoadDouble => "LDRD",
            Class::LoadMultiple => "LDM/POP",
            Class::Store => "store (STR*)",
            Class::StoreDouble => "STRD",
            Class::StoreMultiple => "STM/PUSH",
            Class::Branch => "branch (B, BL, BX, CBZ)",
            Class::TableBranch => "TBB/TBH",
            Class::It => "IT",
            Class::Barrier => "DSB/DMB/ISB",
            Class::System => "system, hints",
            Class::FpAlu => "FP add/mul/cmp/cvt/mov",
            Class::FpMac => "FP VMLA/VFMA",
            Class::FpDivSqrt => "FP VDIV/VSQRT",
            Class::FpMovCore => "VMOV core<->FP",
            Class::FpStatus => "VMRS/VMSR",
            Class::FpLoad => "VLDR",
            Class::FpStore => "VSTR",
            Class::FpLoadMultiple => "VLDM/VPOP",
            Class::FpStoreMultiple => "VSTM/VPUSH",
            Class::Other => "other",
        }
    }

    /// A load or a store (its address registers can stall or pipeline).
    fn is_memory(self) -> bool {
        matches!(
            self,
            Class::Load
                | Class::LoadDouble
                | Class::LoadMultiple
                | Class::Store
                | Class::StoreDouble
                | Class::StoreMultiple
                | Class::FpLoad
                | Class::FpStore
                | Class::FpLoadMultiple
                | Class::FpStoreMultiple
        )
    }
}

/// The condition-code suffixes (`IT` blocks' instructions carry them).
const CONDITIONS: [&str; 16] = [
    "eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le",
];

/// The class of a mnemonic stem (no `S` flag, no condition, no `.w`/`.f32` qualifier).
fn stem_class(stem: &str) -> Option<Class> {
    const ALU: &[&str] = &[
        "mov", "mvn", "add", "adc", "sub", "sbc", "rsb", "cmp", "cmn", "and", "orr", "orn", "eor",
        "bic", "tst", "teq", "lsl", "lsr", "asr", "ror", "rrx", "neg", "adr", "addw", "subw",
        "movw", "movt", "cpy", "clz", "rbit", "rev", "rev16", "revsh", "ssat", "usat", "ssat16",
        "usat16", "sxtb", "sxth", "uxtb", "uxth", "sxtab", "sxtah", "uxtab", "uxtah", "sxtb16",
        "uxtb16", "sxtab16", "uxtab16", "bfc", "bfi", "sbfx", "ubfx", "sel", "pkhbt", "pkhtb",
        "qadd", "qsub", "qdadd", "qdsub", "usad8", "usada8",
    ];
    const MUL: &[&str] = &[
        "mul", "mla", "mls", "smull", "umull", "smlal", "umlal", "umaal", "smulbb", "smulbt",
        "smultb", "smultt", "smlabb", "smlabt", "smlatb", "smlatt", "smulwb", "smulwt", "smlawb",
        "smlawt", "smlalbb", "smlalbt", "smlaltb", "smlaltt", "smuad", "smuadx", "smusd", "smusdx",
        "smlad", "smladx", "smlsd", "smlsdx", "smlald", "smlaldx", "smlsld", "smlsldx", "smmul",
        "smmulr", "smmla", "smmlar", "smmls", "smmlsr",
    ];
    const LOAD: &[&str] = &[
        "ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrt", "ldrbt", "ldrht", "ldrsbt", "ldrsht",
        "ldrex", "ldrexb", "ldrexh", "lda", "ldab", "ldah", "ldaex", "ldaexb", "ldaexh",
    ];
    const STORE: &[&str] = &[
        "str", "strb", "strh", "strt", "strbt", "strht", "strex", "strexb", "strexh", "stl",
        "stlb", "stlh", "stlex", "stlexb", "stlexh",
    ];
    const SYSTEM: &[&str] = &[
        "mrs", "msr", "cpsid", "cpsie", "nop", "bkpt", "svc", "sev", "wfi", "wfe", "yield", "udf",
        "clrex", "pld", "pli", "sg", "tt", "ttt", "tta", "ttat",
    ];
    // SIMD add/subtract: {s, q, sh, u, uq, uh} × {add8, add16, sub8, sub16, asx, sax}.
    let simd = ["s", "q", "sh", "u", "uq", "uh"].iter().any(|p| {
        stem.strip_prefix(p)
            .is_some_and(|r| ["add8", "add16", "sub8", "sub16", "asx", "sax"].contains(&r))
    });
    let class = if ALU.contains(&stem) || simd {
        Class::Alu
    } else if MUL.contains(&stem) {
        Class::Mul
    } else if LOAD.contains(&stem) {
        Class::Load
    } else if STORE.contains(&stem) {
        Class::Store
    } else if SYSTEM.contains(&stem) {
        Class::System
    } else {
        match stem {
            "sdiv" | "udiv" => Class::Div,
            "ldrd" | "ldaexd" | "ldrexd" => Class::LoadDouble,
            "ldm" | "ldmia" | "ldmfd" | "ldmdb" | "ldmea" | "pop" => Class::LoadMultiple,
            "strd" | "strexd" | "stlexd" => Class::StoreDouble,
            "stm" | "stmia" | "stmea" | "stmdb" | "stmfd" | "push" => Class::StoreMultiple,
            "b" | "bl" | "bx" | "blx" | "cbz" | "cbnz" | "bxns" | "blxns" => Class::Branch,
            "tbb" | "tbh" => Class::TableBranch,
            "dsb" | "dmb" | "isb" => Class::Barrier,
            "vadd" | "vsub" | "vmul" | "vnmul" | "vabs" | "vneg" | "vcmp" | "vcmpe" | "vcvt"
            | "vcvtb" | "vcvtt" | "vcvtr" | "vcvta" | "vcvtn" | "vcvtp" | "vcvtm" | "vseleq"
            | "vselge" | "vselgt" | "vselvs" | "vmaxnm" | "vminnm" | "vrinta" | "vrintn"
            | "vrintp" | "vrintm" | "vrintx" | "vrintz" | "vrintr" | "vmov" => Class::FpAlu,
            "vmla" | "vmls" | "vnmla" | "vnmls" | "vfma" | "vfms" | "vfnma" | "vfnms" => {
                Class::FpMac
            }
            "vdiv" | "vsqrt" => Class::FpDivSqrt,
            "vmrs" | "vmsr" => Class::FpStatus,
            "vldr" => Class::FpLoad,
            "vstr" => Class::FpStore,
            "vldm" | "vldmia" | "vldmdb" | "vpop" => Class::FpLoadMultiple,
            "vstm" | "vstmia" | "vstmdb" | "vpush" => Class::FpStoreMultiple,
            s if s.len() <= 5
                && s.starts_with("it")
                && s[2..].bytes().all(|b| b == b't' || b == b'e') =>
            {
                Class::It
            }
            _ => return None,
        }
    };
    Some(class)
}

/// The class of a mnemonic as capstone prints it (`adds`, `movne`, `orrsne`, `ldr.w`,
/// `vmla.f32`, `bls`), or `None`.
fn mnemonic_class(mnemonic: &str) -> Option<Class> {
    let base = mnemonic.split('.').next().unwrap_or(mnemonic);
    let flagged = |s: &str| {
        stem_class(s).or_else(|| {
            let c = stem_class(s.strip_suffix('s')?)?;
            matches!(c, Class::Alu | Class::Mul).then_some(c)
        })
    };
    flagged(base).or_else(|| {
        CONDITIONS
            .iter()
            .find_map(|c| flagged(base.strip_suffix(c)?))
    })
}

/// A core register named as capstone prints it (`r0`…`r12`, `sb`, `sl`, `fp`, `ip`, `sp`,
/// `lr`, `pc`), with any `!`, `{`, `}`, `[`, `]` or comma around it.
fn core_reg(token: &str) -> Option<u8> {
    let t = token.trim_matches(|c: char| matches!(c, '!' | '{' | '}' | '[' | ']' | ',' | ' '));
    match t {
        "sb" => Some(9),
        "sl" => Some(10),
        "fp" => Some(11),
        "ip" => Some(12),
        "sp" => Some(13),
        "lr" => Some(14),
        "pc" => Some(15),
        _ => t.strip_prefix('r')?.parse().ok().filter(|&n: &u8| n < 16),
    }
}

/// The operands split at top-level commas (a `{…}` list or `[…]` address stays one).
fn operands(ops: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in ops.char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(ops[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !ops[start..].trim().is_empty() {
        out.push(ops[start..].trim());
    }
    out
}

/// 32-bit words a register list moves: `s` registers one each, `d` registers two, core
/// registers one.
fn list_words(list: &str) -> u8 {
    list.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(str::trim)
        .map(|r| match r.as_bytes().first() {
            Some(b'd') if r[1..].parse::<u8>().is_ok() => 2,
            Some(_) => 1,
            None => 0,
        })
        .sum()
}

/// One decoded instruction of a translated block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Insn {
    addr: u32,
    /// 2 or 4 bytes.
    size: u8,
    class: Class,
    /// 32-bit words moved (multiples, `LDRD`/`STRD`, `VLDR`/`VSTR`), else 0.
    words: u8,
    /// Registers it writes that a following address may use (data processing, single
    /// loads).
    dests: Vec<u8>,
    /// Registers its address uses (loads and stores).
    address: Vec<u8>,
    /// A store with a register offset (`[r0, r1]`: Table 3-1's 2 cycles).
    reg_offset: bool,
    /// The mnemonic, when the class is [`Class::Other`].
    unknown: Option<String>,
}

/// Decodes a line of QEMU's `in_asm` log: `0x0000040e:  c004       stm      r0!, {r2}`.
fn parse_insn(line: &str) -> Option<Insn> {
    let rest = line.strip_prefix("0x")?;
    let colon = rest.find(':')?;
    let addr = u32::from_str_radix(&rest[..colon], 16).ok()?;
    let rest = rest[colon + 1..].trim_start();
    let (hw1, rest) = rest.split_once(char::is_whitespace)?;
    let first = u16::from_str_radix(hw1, 16).ok()?;
    // A Thumb halfword of 0b11101…, 0b11110… or 0b11111… starts a 32-bit instruction.
    let (size, rest) = if first >= 0xe800 {
        let (_, r) = rest.trim_start().split_once(char::is_whitespace)?;
        (4, r)
    } else {
        (2, rest)
    };
    let rest = rest.trim_start();
    let (mnemonic, ops) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let ops = operands(ops.trim());
    let (class, unknown) = match mnemonic_class(mnemonic) {
        Some(Class::FpAlu) if mnemonic.starts_with("vmov") => {
            // Table 7-1: a move between FP and core registers is 2 cycles, one between FP
            // registers or of an immediate 1 (a half of a double, `d0[1]`, 1).
            let core =
                ops.iter().any(|o| core_reg(o).is_some()) && !ops.iter().any(|o| o.contains('['));
            (if core { Class::FpMovCore } else { Class::FpAlu }, None)
        }
        Some(c) => (c, None),
        None => (Class::Other, Some(mnemonic.to_owned())),
    };
    let first_reg = ops.first().and_then(|o| core_reg(o));
    let bracket = ops.iter().find(|o| o.starts_with('['));
    let bracket_regs = |b: &str| -> Vec<u8> { b.split(',').filter_map(core_reg).collect() };
    let words = match class {
        Class::LoadDouble | Class::StoreDouble => 2,
        Class::LoadMultiple
        | Class::StoreMultiple
        | Class::FpLoadMultiple
        | Class::FpStoreMultiple => ops
            .iter()
            .find(|o| o.starts_with('{'))
            .map_or(0, |l| list_words(l)),
        Class::FpLoad | Class::FpStore => {
            if ops.first().is_some_and(|o| o.starts_with('d')) {
                2
            } else {
                1
            }
        }
        _ => 0,
    };
    let address = match class {
        _ if !class.is_memory() => Vec::new(),
        _ if bracket.is_some() => bracket.map(|b| bracket_regs(b)).unwrap_or_default(),
        Class::LoadMultiple
        | Class::StoreMultiple
        | Class::FpLoadMultiple
        | Class::FpStoreMultiple => {
            if mnemonic.starts_with("push")
                || mnemonic.starts_with("pop")
                || mnemonic.starts_with("vpush")
                || mnemonic.starts_with("vpop")
            {
                vec![13]
            } else {
                first_reg.into_iter().collect()
            }
        }
        _ => Vec::new(),
    };
    let stem = mnemonic.split('.').next().unwrap_or(mnemonic);
    let no_dest = ["cmp", "cmn", "tst", "teq"]
        .iter()
        .any(|s| stem.starts_with(s));
    let dests = match class {
        Class::Alu | Class::Mul if !no_dest => {
            let long = [
                "smull", "umull", "smlal", "umlal", "umaal", "smlald", "smlsld",
            ]
            .iter()
            .any(|s| stem.starts_with(s));
            let n = if long { 2 } else { 1 };
            ops.iter().take(n).filter_map(|o| core_reg(o)).collect()
        }
        Class::Load => first_reg.into_iter().collect(),
        _ => Vec::new(),
    };
    let reg_offset = class == Class::Store && bracket.is_some_and(|b| bracket_regs(b).len() >= 2);
    Some(Insn {
        addr,
        size,
        class,
        words,
        dests,
        address,
        reg_offset,
        unknown,
    })
}

/// What one executed instruction adds to a profile, besides its class: the TRM's pairing
/// rules with the instruction before it in the same block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pairing {
    /// Pipelined after a single `LDR` (one cycle less).
    pipelined: bool,
    /// Its address waits for the data-processing result before it (one cycle more).
    agu_stall: bool,
}

/// The pairing of `cur` after `prev` (DDI0439 §3.3.2, load/store timings).
fn pairing(prev: Option<&Insn>, cur: &Insn) -> Pairing {
    let Some(prev) = prev else {
        return Pairing::default();
    };
    let uses = |regs: &[u8]| regs.iter().any(|r| cur.address.contains(r));
    // "LDR [any] are pipelined when possible… if the next instruction is an LDR or STR, and
    // the destination of the first LDR is not used to compute the address for the next
    // instruction, then one cycle is removed from the cost of the next instruction": only
    // where it has one to lose (a load, a register-offset store; an immediate-offset STR is
    // one cycle already).
    let pipelined = prev.class == Class::Load
        && (cur.class == Class::Load || (cur.class == Class::Store && cur.reg_offset))
        && !uses(&prev.dests);
    // "Any load or store that generates an address dependent on the result of a preceding
    // data processing operation stalls the pipeline for an additional cycle".
    let agu_stall =
        matches!(prev.class, Class::Alu | Class::Mul) && cur.class.is_memory() && uses(&prev.dests);
    Pairing {
        pipelined,
        agu_stall,
    }
}

/// A translated block: its instructions and their pairings.
#[derive(Debug, Clone)]
struct Block {
    insns: Vec<Insn>,
    pairings: Vec<Pairing>,
}

impl Block {
    fn new(insns: Vec<Insn>) -> Block {
        let pairings = (0..insns.len())
            .map(|i| pairing(i.checked_sub(1).map(|p| &insns[p]), &insns[i]))
            .collect();
        Block { insns, pairings }
    }

    fn start(&self) -> u32 {
        self.insns.first().map_or(0, |i| i.addr)
    }

    /// The address after its last instruction.
    fn end(&self) -> u32 {
        self.insns.last().map_or(0, |i| i.addr + u32::from(i.size))
    }
}

// ---------------------------------------------------------------------------------------
// Profiles

/// An executed-instruction histogram: counts by (class, words moved), the pairing events
/// and the non-sequential transitions. Signed, so that two runs can be subtracted.
#[derive(Debug, Clone, Default, PartialEq)]
struct Profile {
    ops: BTreeMap<(Class, u8), i64>,
    pipelined: i64,
    agu_stalls: i64,
    /// Register-offset stores (one cycle more than the immediate form).
    reg_offset_stores: i64,
    /// Non-sequential block transitions: taken branches, calls, returns, exceptions.
    taken: i64,
    /// Mnemonics classed [`Class::Other`].
    unknown: BTreeMap<String, i64>,
}

impl Profile {
    /// Adds `count` executions of `block`'s instructions before `until` (all: `u32::MAX`).
    fn add_block(&mut self, block: &Block, count: i64, until: u32) {
        for (insn, p) in block.insns.iter().zip(&block.pairings) {
            if insn.addr >= until {
                break;
            }
            *self.ops.entry((insn.class, insn.words)).or_default() += count;
            self.pipelined += count * i64::from(p.pipelined);
            self.agu_stalls += count * i64::from(p.agu_stall);
            self.reg_offset_stores += count * i64::from(insn.reg_offset);
            if let Some(m) = &insn.unknown {
                *self.unknown.entry(m.clone()).or_default() += count;
            }
        }
    }

    fn instructions(&self) -> i64 {
        self.ops.values().sum()
    }

    fn class_count(&self, class: Class) -> i64 {
        self.ops
            .iter()
            .filter(|((c, _), _)| *c == class)
            .map(|(_, n)| n)
            .sum()
    }

    /// `self − other`: the histogram of what the longer run did more.
    fn minus(&self, other: &Profile) -> Profile {
        let mut d = self.clone();
        for (k, v) in &other.ops {
            *d.ops.entry(*k).or_default() -= v;
        }
        for (k, v) in &other.unknown {
            *d.unknown.entry(k.clone()).or_default() -= v;
        }
        d.ops.retain(|_, v| *v != 0);
        d.unknown.retain(|_, v| *v != 0);
        d.pipelined -= other.pipelined;
        d.agu_stalls -= other.agu_stalls;
        d.reg_offset_stores -= other.reg_offset_stores;
        d.taken -= other.taken;
        d
    }
}

// ---------------------------------------------------------------------------------------
// The trace

/// Reads QEMU's `-d in_asm,exec,nochain` log line by line into a [`Profile`].
#[derive(Debug, Default)]
struct TraceParser {
    /// Every translation, in log order.
    blocks: Vec<Block>,
    /// Host code pointer → translation (a flushed and reused pointer is remapped).
    by_ptr: HashMap<u64, usize>,
    /// The translation being read (`IN:` seen, its `Trace` not yet).
    pending: Option<Vec<Insn>>,
    /// Full executions per translation.
    full: Vec<i64>,
    /// Partial executions (rewound): (translation, first address not run) → count.
    partial: HashMap<(usize, u32), i64>,
    /// Where the last executed block ended.
    prev_end: Option<u32>,
    /// The last `Trace`, to undo or trim: translation, `prev_end` before it, whether it
    /// counted a taken transition.
    last: Option<(usize, Option<u32>, bool)>,
    taken: i64,
    /// `Trace` lines of blocks never seen translated, blocks whose `Trace` pc differed from
    /// their `IN:` address (both 0 on a well-formed log).
    unmatched: u64,
}

/// `Trace 0: 0x7f5110000740 [00800408/0000040e/00000110/ff020200] Reset` → (pointer, pc).
fn parse_trace(line: &str) -> Option<(u64, u32)> {
    let rest = &line[line.find(": 0x")? + 4..];
    let (ptr, rest) = rest.split_once(' ')?;
    let fields = rest.strip_prefix('[')?.split(']').next()?;
    let pc = fields.split('/').nth(1)?;
    Some((
        u64::from_str_radix(ptr, 16).ok()?,
        u32::from_str_radix(pc, 16).ok()?,
    ))
}

impl TraceParser {
    fn line(&mut self, line: &str) {
        if line.starts_with("Trace ") {
            if let Some((ptr, pc)) = parse_trace(line) {
                self.executed(ptr, pc);
            }
        } else if line.starts_with("0x") {
            if let (Some(p), Some(i)) = (self.pending.as_mut(), parse_insn(line)) {
                p.push(i);
            }
        } else if line.starts_with("IN:") {
            self.pending = Some(Vec::new());
        } else if line.starts_with("Stopped execution of TB chain") {
            // Entered, then left before its first instruction: undo.
            if let Some((b, prev_end, counted)) = self.last.take() {
                self.full[b] -= 1;
                self.taken -= i64::from(counted);
                self.prev_end = prev_end;
            }
        } else if let Some(a) = line.strip_prefix("cpu_io_recompile: rewound execution of TB to ") {
            // Ran up to `a`, which runs again as a block of its own.
            if let (Some((b, _, _)), Ok(a)) = (self.last.take(), u32::from_str_radix(a.trim(), 16))
            {
                self.full[b] -= 1;
                *self.partial.entry((b, a)).or_default() += 1;
                self.prev_end = Some(a);
            }
        }
    }

    fn executed(&mut self, ptr: u64, pc: u32) {
        if let Some(insns) = self.pending.take() {
            let block = Block::new(insns);
            if block.insns.is_empty() || block.start() != pc {
                self.unmatched += 1;
            } else {
                self.by_ptr.insert(ptr, self.blocks.len());
                self.blocks.push(block);
                self.full.push(0);
            }
        }
        let Some(&b) = self.by_ptr.get(&ptr) else {
            self.unmatched += 1;
            return;
        };
        let counted = self.prev_end.is_some_and(|e| e != pc);
        self.taken += i64::from(counted);
        self.last = Some((b, self.prev_end, counted));
        self.full[b] += 1;
        self.prev_end = Some(self.blocks[b].end());
    }

    fn profile(&self) -> Profile {
        let mut p = Profile {
            taken: self.taken,
            ..Profile::default()
        };
        for (block, &n) in self.blocks.iter().zip(&self.full) {
            if n != 0 {
                p.add_block(block, n, u32::MAX);
            }
        }
        for (&(b, until), &n) in &self.partial {
            p.add_block(&self.blocks[b], n, until);
        }
        p
    }
}

/// Parses a trace file.
fn parse_trace_file(path: &Path) -> Result<(Profile, u64), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut parser = TraceParser::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        match std::str::from_utf8(&buf) {
            Ok(line) => parser.line(line.trim_end()),
            Err(_) => parser.line(String::from_utf8_lossy(&buf).trim_end()),
        }
    }
    Ok((parser.profile(), parser.unmatched))
}

// ---------------------------------------------------------------------------------------
// Cycle counts

/// Cycles of a class: `base + per_word × words moved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cost {
    base: u32,
    per_word: u32,
}

const fn cost(base: u32, per_word: u32) -> Cost {
    Cost { base, per_word }
}

/// Cycle counts of the Cortex-M4 (with FPU), zero wait states. Each entry: the class, its
/// cycles, where the TRM says so (ARM DDI0439B, Cortex-M4 Technical Reference Manual r0p1).
/// `P` (pipeline refill, [`REFILL`]) is added per taken transition, not here.
const M4_TIMINGS: [(Class, Cost, &str); 24] = [
    // §3.3.1 Table 3-1: Move, Add, Subtract, Compare, Logical, Shift, Rotate, Count leading
    // zeroes, Reverse, Saturate, Bitfield, Extend, Parallel add/sub: 1 (+P if PC is written).
    (
        Class::Alu,
        cost(1, 0),
        "DDI0439 Table 3-1: data processing 1",
    ),
    // §3.3.1 Table 3-1: MUL, MLA, MLS, SMULL, UMULL, SMLAL, UMLAL and the DSP multiplies: 1.
    (
        Class::Mul,
        cost(1, 0),
        "DDI0439 Table 3-1: multiply, multiply-accumulate, long 1",
    ),
    // §3.3.1 Table 3-1: SDIV, UDIV "2 to 12" (early termination on the operands); 7, the
    // middle (the operands are not in the trace).
    (
        Class::Div,
        cost(7, 0),
        "DDI0439 Table 3-1: divide 2 to 12, taken as 7",
    ),
    // §3.3.1 Table 3-1: LDR, LDRH, LDRB, LDRSH, LDRSB, LDREX: 2; footnote and §3.3.2:
    // neighbouring single loads/stores pipeline (one cycle less, see `pairing`).
    (
        Class::Load,
        cost(2, 0),
        "DDI0439 Table 3-1: load single 2 (1 when pipelined, §3.3.2)",
    ),
    // §3.3.1 Table 3-1: LDRD 1 + N (N = 2).
    (
        Class::LoadDouble,
        cost(1, 1),
        "DDI0439 Table 3-1: LDRD 1+N, N = 2",
    ),
    // §3.3.1 Table 3-1: LDM, POP 1 + N (+P when PC is loaded).
    (
        Class::LoadMultiple,
        cost(1, 1),
        "DDI0439 Table 3-1: LDM/POP 1+N",
    ),
    // §3.3.2: "STR Rx,[Ry,#imm] is always one cycle"; Table 3-1's 2 for the register
    // offset form is counted by `reg_offset_stores`.
    (
        Class::Store,
        cost(1, 0),
        "DDI0439 §3.3.2: STR immediate offset 1 (register offset 2)",
    ),
    // §3.3.1 Table 3-1: STRD 1 + N (N = 2).
    (
        Class::StoreDouble,
        cost(1, 1),
        "DDI0439 Table 3-1: STRD 1+N, N = 2",
    ),
    // §3.3.1 Table 3-1: STM, PUSH 1 + N.
    (
        Class::StoreMultiple,
        cost(1, 1),
        "DDI0439 Table 3-1: STM/PUSH 1+N",
    ),
    // §3.3.1 Table 3-1: B, B<cond>, BL, BX, BLX, CBZ, CBNZ 1 + P taken, 1 not taken.
    (
        Class::Branch,
        cost(1, 0),
        "DDI0439 Table 3-1: branch 1 (+P taken)",
    ),
    // §3.3.1 Table 3-1: TBB, TBH 2 + P.
    (
        Class::TableBranch,
        cost(2, 0),
        "DDI0439 Table 3-1: TBB/TBH 2 (+P)",
    ),
    // §3.3.1 Table 3-1: IT 1 (its folding onto a preceding 16-bit instruction not
    // modelled).
    (
        Class::It,
        cost(1, 0),
        "DDI0439 Table 3-1: IT 1 (folding ignored)",
    ),
    // §3.3.1 Table 3-1: DSB, DMB, ISB 1 + B (B, the barrier's wait, taken as 0).
    (
        Class::Barrier,
        cost(1, 0),
        "DDI0439 Table 3-1: barriers 1+B, B = 0",
    ),
    // §3.3.1 Table 3-1: MRS, MSR 1 or 2, CPSID/CPSIE, NOP, hints 1; taken as 1.
    (
        Class::System,
        cost(1, 0),
        "DDI0439 Table 3-1: MRS/MSR/CPS/NOP 1",
    ),
    // §7.2.3 Table 7-1: VADD, VSUB, VMUL, VNMUL, VABS, VNEG, VCMP, VCVT, VMOV (FP or
    // immediate) 1.
    (
        Class::FpAlu,
        cost(1, 0),
        "DDI0439 Table 7-1: VADD/VSUB/VMUL/VCMP/VCVT/VMOV 1",
    ),
    // §7.2.3 Table 7-1: VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS 3.
    (Class::FpMac, cost(3, 0), "DDI0439 Table 7-1: VMLA/VFMA 3"),
    // §7.2.3 Table 7-1: VDIV, VSQRT 14.
    (
        Class::FpDivSqrt,
        cost(14, 0),
        "DDI0439 Table 7-1: VDIV/VSQRT 14",
    ),
    // §7.2.3 Table 7-1: VMOV one float to/from a core register, two to/from two core
    // registers 2.
    (
        Class::FpMovCore,
        cost(2, 0),
        "DDI0439 Table 7-1: VMOV core<->FP 2",
    ),
    // §7.2.3 Table 7-1: VMRS, VMSR 1.
    (
        Class::FpStatus,
        cost(1, 0),
        "DDI0439 Table 7-1: VMRS/VMSR 1",
    ),
    // §7.2.3 Table 7-1: VLDR single 2, double 3.
    (
        Class::FpLoad,
        cost(1, 1),
        "DDI0439 Table 7-1: VLDR 2 (single), 3 (double)",
    ),
    // §7.2.3 Table 7-1: VSTR single 2, double 3.
    (
        Class::FpStore,
        cost(1, 1),
        "DDI0439 Table 7-1: VSTR 2 (single), 3 (double)",
    ),
    // §7.2.3 Table 7-1: VLDM, VPOP 1 + N (singles), 1 + 2N (doubles).
    (
        Class::FpLoadMultiple,
        cost(1, 1),
        "DDI0439 Table 7-1: VLDM/VPOP 1+N",
    ),
    // §7.2.3 Table 7-1: VSTM, VPUSH 1 + N (singles), 1 + 2N (doubles).
    (
        Class::FpStoreMultiple,
        cost(1, 1),
        "DDI0439 Table 7-1: VSTM/VPUSH 1+N",
    ),
    // Not in the tables: 1.
    (Class::Other, cost(1, 0), "unclassified: 1"),
];

/// A core's cycle model.
#[derive(Debug)]
struct CoreModel {
    timings: &'static [(Class, Cost, &'static str)],
    /// Pipeline refill per taken transition.
    refill: u32,
    /// Where the counts come from, for the tables.
    source: &'static str,
}

/// The Cortex-M4F: DDI0439's tables.
const M4_MODEL: CoreModel = CoreModel {
    timings: &M4_TIMINGS,
    refill: REFILL,
    source: "ARM DDI0439 (Cortex-M4 TRM) Table 3-1, §3.3.2, Table 7-1",
};

/// The Cortex-M33: ARM 100230 (Cortex-M33 TRM) has no per-instruction cycle table of
/// DDI0439's kind; the Cortex-M4's counts are used unchanged (LLVM schedules `cortex-m33`
/// with its Cortex-M4 model too).
const M33_MODEL: CoreModel = CoreModel {
    timings: &M4_TIMINGS,
    refill: REFILL,
    source: "ARM 100230 (Cortex-M33 TRM) publishes no cycle table: the Cortex-M4's counts",
};

impl CoreModel {
    fn cost(&self, class: Class) -> Cost {
        self.timings
            .iter()
            .find(|(c, _, _)| *c == class)
            .map_or(cost(1, 0), |(_, k, _)| *k)
    }

    /// Cycles of `p` with `ws` flash wait states per taken transition, plus `ws` per line of
    /// `flash_lines` read from flash.
    fn cycles(&self, p: &Profile, ws: u32, flash_lines: i64) -> i64 {
        let base: i64 = p
            .ops
            .iter()
            .map(|(&(class, words), &n)| {
                let k = self.cost(class);
                n * i64::from(k.base + k.per_word * u32::from(words))
            })
            .sum();
        base - p.pipelined
            + p.agu_stalls
            + p.reg_offset_stores
            + p.taken * i64::from(self.refill + ws)
            + flash_lines * i64::from(ws)
    }
}

/// The cycle model of a board.
fn model_of(board: &QemuBoard) -> &'static CoreModel {
    if board.short == M33.short {
        &M33_MODEL
    } else {
        &M4_MODEL
    }
}

// ---------------------------------------------------------------------------------------
// Runs

/// One row of the plan: a board, the weights, the KV cache, the arithmetic.
type Planned = (&'static QemuBoard, Quant, Kv, Arith);

/// The rows: on the Cortex-M4F then the Cortex-M33, f32 + f32 KV + float, Q8 + q8 KV +
/// float, Q8 + q8 KV + integer.
fn plan() -> Vec<Planned> {
    let mut plan = Vec::new();
    for board in [M4F, M33] {
        plan.push((board, Quant::F32, Kv::F32, Arith::Float));
        plan.push((board, Quant::Q8, Kv::Q8, Arith::Float));
        plan.push((board, Quant::Q8, Kv::Q8, Arith::Integer));
    }
    plan
}

/// The model the rows run: stories260K from the reference folder, else `models/rope`.
struct Model {
    name: &'static str,
    path: PathBuf,
    /// Where it came from, as the tables say.
    source: String,
}

fn model() -> Model {
    let stories = models_dir().join("stories260K.bin");
    if stories.is_file() {
        Model {
            name: "stories260K",
            path: stories,
            source: "stories260K (llama2.c's, from the reference folder `../shared/models`)".into(),
        }
    } else {
        eprintln!(
            "xtask: cycles: {} not found: using the project's models/rope instead",
            stories.display()
        );
        Model {
            name: "rope",
            path: root().join("models").join("rope"),
            source: format!(
                "models/rope (the project's own 279K-parameter model: {} was not found)",
                stories.display()
            ),
        }
    }
}

/// One estimated row.
#[derive(Debug, Clone)]
struct Row {
    core: &'static str,
    quant: Quant,
    kv: Kv,
    arith: Arith,
    /// Positions in the difference (N).
    positions: u32,
    /// The difference of the two runs' histograms.
    profile: Profile,
    /// The firmware's SysTick instruction counts' difference.
    systick_instructions: i64,
    /// Bytes of the model image (the weight-streaming column).
    image_bytes: u64,
    model: &'static CoreModel,
}

/// Per-token figures of a row, as JSON has them.
#[derive(Debug, Serialize)]
struct JsonRow {
    core: &'static str,
    quant: &'static str,
    kv: &'static str,
    arith: &'static str,
    positions: u32,
    instructions_per_token: f64,
    instructions_per_token_systick: f64,
    systick_over_trace: f64,
    taken_transitions_per_token: f64,
    cycles_per_token: BTreeMap<String, f64>,
    cycles_per_instruction: BTreeMap<String, f64>,
    /// Instructions per token by class.
    classes: BTreeMap<&'static str, f64>,
    cycle_source: &'static str,
}

impl Row {
    fn per_token(&self, n: i64) -> f64 {
        n as f64 / f64::from(self.positions)
    }

    fn instructions(&self) -> f64 {
        self.per_token(self.profile.instructions())
    }

    /// The firmware's SysTick count over the trace's.
    fn systick_ratio(&self) -> f64 {
        self.systick_instructions as f64 / self.profile.instructions() as f64
    }

    /// Whether the two counts agree within 0.5 %.
    fn agrees(&self) -> bool {
        (self.systick_ratio() - 1.0).abs() <= 0.005
    }

    /// Flash lines of the image per token.
    fn weight_lines(&self) -> i64 {
        let lines = self.image_bytes.div_ceil(FLASH_LINE_BYTES);
        i64::try_from(lines).unwrap_or(i64::MAX) * i64::from(self.positions)
    }

    /// Cycles per token at `ws` wait states, with the weight lines or without.
    fn cycles(&self, ws: u32, weights: bool) -> f64 {
        let lines = if weights { self.weight_lines() } else { 0 };
        self.per_token(self.model.cycles(&self.profile, ws, lines))
    }

    fn json(&self) -> JsonRow {
        let mut cycles = BTreeMap::new();
        let mut cpi = BTreeMap::new();
        for ws in WAIT_STATES {
            let c = self.cycles(ws, false);
            cycles.insert(format!("ws{ws}"), c.round());
            cpi.insert(format!("ws{ws}"), round3(c / self.instructions()));
            if ws > 0 {
                cycles.insert(
                    format!("ws{ws}_weights_from_flash"),
                    self.cycles(ws, true).round(),
                );
            }
        }
        JsonRow {
            core: self.core,
            quant: self.quant.as_str(),
            kv: self.kv.as_str(),
            arith: self.arith.as_str(),
            positions: self.positions,
            instructions_per_token: self.instructions().round(),
            instructions_per_token_systick: self.per_token(self.systick_instructions).round(),
            systick_over_trace: round3(self.systick_ratio()),
            taken_transitions_per_token: self.per_token(self.profile.taken).round(),
            cycles_per_token: cycles,
            cycles_per_instruction: cpi,
            classes: CLASSES
                .iter()
                .filter_map(|&c| {
                    let n = self.profile.class_count(c);
                    (n != 0).then(|| (c.key(), (self.per_token(n) * 10.0).round() / 10.0))
                })
                .collect(),
            cycle_source: self.model.source,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Seconds a traced run may take: `QEMU_TIMEOUT`, else 600.
fn time_limit() -> Duration {
    let secs = std::env::var("QEMU_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// Waits for `child`, killing it after `limit`.
fn wait_with_limit(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("QEMU ran past {} s: stopped", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `elf` on `board` with `-icount shift=0` and the trace logged into `trace`; returns
/// the decoded defmt log (the generated text is discarded).
fn run_traced(
    board: &QemuBoard,
    elf: &Path,
    cmdline: &str,
    trace: &Path,
) -> Result<Vec<String>, String> {
    eprintln!(
        "xtask: $ qemu-system-arm -machine {} -cpu {} -icount shift=0 -d in_asm,exec,nochain -D {} -kernel {} -append {cmdline:?} | defmt-print",
        board.machine,
        board.cpu,
        trace.display(),
        elf.display()
    );
    let mut q = Command::new("qemu-system-arm")
        .args(["-machine", board.machine, "-cpu", board.cpu, "-nographic"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-icount", "shift=0", "-d", "in_asm,exec,nochain", "-D"])
        .arg(trace)
        .arg("-kernel")
        .arg(elf)
        .arg("-append")
        .arg(cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-arm: {e}"))?;
    let frames = q.stdout.take().ok_or("no QEMU stdout")?;
    let mut print = Command::new("defmt-print")
        .arg("-e")
        .arg(elf)
        .stdin(Stdio::from(frames))
        .stdout(Stdio::piped())
        .stderr(to_stderr())
        .spawn()
        .map_err(|e| format!("cannot start defmt-print: {e}"))?;
    let mut decoded = print.stdout.take().ok_or("no defmt-print stdout")?;
    let log = thread::spawn(move || {
        let mut s = String::new();
        let _ = decoded.read_to_string(&mut s);
        s
    });
    let status = wait_with_limit(&mut q, time_limit());
    let _ = print.wait();
    let log: Vec<String> = log
        .join()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let status = status?;
    if !status.success() {
        for l in &log {
            eprintln!("{l}");
        }
        return Err(format!("the firmware failed under QEMU ({status})"));
    }
    Ok(log)
}

/// `key=value` from the firmware's `figures:` line.
fn figure(log: &[String], key: &str) -> Result<i64, String> {
    let line = log
        .iter()
        .find(|l| l.contains("figures:"))
        .ok_or("the firmware printed no `figures:` line")?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key}= in {line:?}"))
}

/// One traced run of `steps` positions: its profile and the firmware's figures.
fn traced(
    board: &QemuBoard,
    elf: &Path,
    settings: &Settings,
    trace: &Path,
) -> Result<(Profile, i64, i64), String> {
    let cmdline = format!("stop=none {}", settings.cmdline());
    let run = run_traced(board, elf, &cmdline, trace);
    let parsed = run.and_then(|log| {
        let start = Instant::now();
        let size = std::fs::metadata(trace).map(|m| m.len()).unwrap_or(0);
        let (profile, unmatched) = parse_trace_file(trace)?;
        eprintln!(
            "xtask: cycles: parsed {:.0} MB of trace in {} ({} instructions{})",
            size as f64 / 1e6,
            secs(start.elapsed()),
            profile.instructions(),
            if unmatched > 0 {
                format!(", {unmatched} unmatched blocks")
            } else {
                String::new()
            }
        );
        Ok((
            profile,
            figure(&log, "positions")?,
            figure(&log, "instructions")?,
        ))
    });
    // The trace is large: never kept, whatever happened.
    let _ = std::fs::remove_file(trace);
    parsed
}

/// `cargo xtask cycles`.
pub fn cycles(args: CyclesArgs) -> Result<(), String> {
    let start = Instant::now();
    ensure_tools()?;
    let model = model();
    let work = work_dir()?;
    let n = args.steps;
    let mut rows = Vec::new();
    for (board, quant, kv, arith) in plan() {
        let image = work.join(format!(
            "cycles-{}-{}-{}.mfi",
            model.name,
            quant.as_str(),
            arith.as_str()
        ));
        convert_for(&model.path, None, quant, arith, &image)?;
        let image_bytes = std::fs::metadata(&image)
            .map_err(|e| format!("{}: {e}", image.display()))?
            .len();
        let built = build_firmware_for(board, &image, kv, arith, None)?;
        // A copy of our own: other tasks may rebuild the board's binary meanwhile.
        let elf = work.join(format!(
            "cycles-{}-{}-{}-{}.elf",
            board.short,
            quant.as_str(),
            kv.as_str(),
            arith.as_str()
        ));
        std::fs::copy(&built, &elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let mut runs = Vec::new();
        for steps in [n, 2 * n] {
            let s = Settings {
                steps,
                temperature: 0.0,
                kv,
                arith,
                ..Settings::default()
            };
            let trace = work.join(format!("cycles-trace-{}-{steps}.log", board.short));
            let (profile, positions, instructions) = traced(board, &elf, &s, &trace)?;
            if positions != i64::from(steps) {
                return Err(format!("{steps} steps asked, {positions} positions run"));
            }
            runs.push((profile, instructions));
        }
        let _ = std::fs::remove_file(&elf);
        let row = Row {
            core: board.core,
            quant,
            kv,
            arith,
            positions: n,
            profile: runs[1].0.minus(&runs[0].0),
            systick_instructions: runs[1].1 - runs[0].1,
            image_bytes,
            model: model_of(board),
        };
        for (m, c) in &row.profile.unknown {
            eprintln!("xtask: cycles: unclassified mnemonic {m}: {c} (1 cycle each)");
        }
        let (trace_n, systick_n) = (row.instructions(), row.per_token(row.systick_instructions));
        if !row.agrees() {
            eprintln!(
                "xtask: cycles: warning: the trace counts {trace_n:.0} instructions per token, \
                 the firmware's SysTick {systick_n:.0} (ratio {:.3})",
                row.systick_ratio()
            );
        }
        eprintln!(
            "xtask: cycles {} {} (KV {}, {}): {:.0} instructions/token (SysTick {:.0}), {:.0} cycles/token at 0 WS, {:.0} at 5 WS",
            row.core,
            quant.as_str(),
            kv.as_str(),
            arith.as_str(),
            trace_n,
            systick_n,
            row.cycles(0, false),
            row.cycles(5, false)
        );
        rows.push(row);
    }
    eprintln!("xtask: cycles done ({})", secs(start.elapsed()));
    let md = markdown(&rows, &model.source, n);
    let js = json(&rows, &model.source, n)?;
    if args.write {
        let docs = root().join("docs");
        for (name, text) in [
            (
                "cycles.md",
                format!(
                    "# Estimated cycles per token\n\nWritten by `cargo xtask cycles --write` \
                     (see `xtask/src/cycles.rs`); do not edit.\n\n{md}"
                ),
            ),
            ("cycles.json", js.clone() + "\n"),
        ] {
            let path = docs.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("xtask: wrote {}", path.display());
        }
    }
    if args.json {
        println!("{js}");
    } else {
        print!("{md}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Output

/// The method, as printed above the table.
fn method(source: &str, n: u32) -> String {
    format!(
        "**These are estimates, not measurements.** No cycle-accurate model of these cores is \
         run: QEMU 7.2 (TCG, no plugins) logs every translated block's disassembly and every \
         block it executes (`-icount shift=0 -d in_asm,exec,nochain`), which gives the \
         executed-instruction histogram; each instruction is then weighted by the cycle count \
         the Cortex-M4 Technical Reference Manual gives its class (ARM DDI0439: Table 3-1, the \
         load/store timing rules of §3.3.2, the FPU's Table 7-1; table below). The Cortex-M33 \
         TRM (ARM 100230) publishes no such table, so the M33 rows use the same counts and \
         differ only by the code compiled for ARMv8-M. Per token: each firmware runs {n} and \
         {} positions ({source}; greedy from BOS, `stop=none`, as `cargo xtask bench`), and the \
         difference of the two histograms divided by {n} is positions {}–{}: forward step, \
         greedy sampling, decoding, text output, with boot and setup cancelling out (early \
         positions: shorter attention than `bench`'s 200/512-position averages). Every \
         non-sequential block transition in the trace (taken branch, call, return, exception) \
         adds a pipeline refill of P = {REFILL} cycles (the TRM's range is 1–3); a single load \
         pipelined after a single LDR saves a cycle, a load or store whose address the \
         instruction before computed costs one more. Flash wait states (WS) add WS cycles per \
         non-sequential transition (the refill fetched from flash; sequential fetches hidden \
         by the prefetch buffer; no instruction cache or flash accelerator). QEMU's trace has no \
         data addresses, so which loads read flash is not known: the last column adds WS per \
         {FLASH_LINE_BYTES}-byte flash line of the model image, as if all weights were \
         streamed from flash once per token with no data cache. Not modelled: FPU result \
         latencies and interlocks beyond the issue counts, IT folding, the divider's \
         operand-dependent time (7 cycles, the middle of 2–12), exception stacking, bus \
         contention, SRAM wait states, caches. \"Instructions/token\" is the trace's count; \
         the firmware's own SysTick count of the same runs is in the JSON and checked below.\n",
        2 * n,
        n + 1,
        2 * n
    )
}

/// `1234567.0` → `1.23 M`.
fn millions(x: f64) -> String {
    format!("{:.2} M", x / 1e6)
}

/// The method, the table, the histogram by class and the cycle table, in Markdown.
fn markdown(rows: &[Row], source: &str, n: u32) -> String {
    let mut s = method(source, n);
    let _ = writeln!(
        s,
        "\n| core | weights | KV cache | arithmetic | instructions/token | cycles/token, 0 WS | CPI, 0 WS | cycles/token, 5 WS | CPI, 5 WS | 5 WS + weights from flash |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let i = r.instructions();
        let (c0, c5, c5w) = (r.cycles(0, false), r.cycles(5, false), r.cycles(5, true));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} |",
            r.core,
            r.quant.as_str(),
            r.kv.as_str(),
            r.arith.as_str(),
            millions(i),
            millions(c0),
            c0 / i,
            millions(c5),
            c5 / i,
            millions(c5w),
        );
    }
    let off: Vec<String> = rows
        .iter()
        .filter(|r| !r.agrees())
        .map(|r| {
            format!(
                "{} {}/{}/{} (SysTick/trace = {:.3})",
                r.core,
                r.quant.as_str(),
                r.kv.as_str(),
                r.arith.as_str(),
                r.systick_ratio()
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "\nCheck: the trace's instruction count and the firmware's own SysTick count of the same \
         runs agree within 0.5 % {}.",
        if off.is_empty() {
            "on every row".to_owned()
        } else {
            format!("except on {}", off.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "\nExecuted instructions per token by class (thousands), and the events the estimate adds:\n"
    );
    let heads: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}/{}/{}",
                r.core.trim_start_matches("cortex-"),
                r.quant.as_str(),
                r.kv.as_str(),
                r.arith.as_str()
            )
        })
        .collect();
    let _ = writeln!(s, "| class | {} |", heads.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(rows.len()));
    let thousands = |x: f64| format!("{:.1}", x / 1e3);
    for c in CLASSES {
        if rows.iter().all(|r| r.profile.class_count(c) == 0) {
            continue;
        }
        let cells: Vec<String> = rows
            .iter()
            .map(|r| thousands(r.per_token(r.profile.class_count(c))))
            .collect();
        let _ = writeln!(s, "| {} | {} |", c.label(), cells.join(" | "));
    }
    type Event = (&'static str, fn(&Profile) -> i64);
    let events: [Event; 4] = [
        ("taken transitions (+P, +WS each)", |p| p.taken),
        ("pipelined loads (−1 each)", |p| p.pipelined),
        ("AGU stalls (+1 each)", |p| p.agu_stalls),
        ("register-offset stores (+1 each)", |p| p.reg_offset_stores),
    ];
    for (name, f) in events {
        let cells: Vec<String> = rows
            .iter()
            .map(|r| thousands(r.per_token(f(&r.profile))))
            .collect();
        let _ = writeln!(s, "| *{name}* | {} |", cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "\nCycles per instruction class (Cortex-M4F and, for want of its own table, Cortex-M33; \
         N: 32-bit words moved):\n"
    );
    let _ = writeln!(s, "| class | cycles | source |");
    let _ = writeln!(s, "|---|---|---|");
    for (c, k, src) in M4_TIMINGS {
        let cyc = match (k.base, k.per_word) {
            (b, 0) => b.to_string(),
            (b, 1) => format!("{b} + N"),
            (b, w) => format!("{b} + {w}N"),
        };
        let _ = writeln!(s, "| {} | {cyc} | {src} |", c.label());
    }
    s
}

/// The whole output as JSON: the method, the model, the rows.
fn json(rows: &[Row], source: &str, n: u32) -> Result<String, String> {
    #[derive(Serialize)]
    struct Out<'a> {
        method: String,
        model: &'a str,
        positions: [u32; 2],
        refill_cycles: u32,
        flash_line_bytes: u64,
        rows: Vec<JsonRow>,
    }
    let out = Out {
        method: method(source, n).trim().to_owned(),
        model: source,
        positions: [n, 2 * n],
        refill_cycles: REFILL,
        flash_line_bytes: FLASH_LINE_BYTES,
        rows: rows.iter().map(Row::json).collect(),
    };
    serde_json::to_string_pretty(&out).map_err(|e| format!("cannot write the rows: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -icount shift=0 -d
    /// in_asm,exec,nochain` (QEMU 7.2.22, Debian) running the M4F firmware: the reset
    /// handler's first blocks, the `.bss` zeroing loop with an `-icount` stop, then the
    /// FPU enable with two device accesses rewound mid-block.
    const SNIPPET: &str = "\
----------------
IN: Reset
0x00000400:  f005 fe22  bl       #0x6048

Trace 0: 0x7f5110000100 [00800408/00000400/00000110/ff020200] Reset
----------------
IN: __defmt_default_timestamp
0x00006048:  b580       push     {r7, lr}
0x0000604a:  466f       mov      r7, sp
0x0000604c:  bd80       pop      {r7, pc}

Trace 0: 0x7f5110000240 [00800408/00006048/00000110/ff020200] __defmt_default_timestamp
----------------
IN: Reset
0x00000404:  4812       ldr      r0, [pc, #0x48]
0x00000406:  4913       ldr      r1, [pc, #0x4c]
0x00000408:  2200       movs     r2, #0
0x0000040a:  4281       cmp      r1, r0
0x0000040c:  d001       beq      #0x412

Trace 0: 0x7f5110000500 [00800408/00000404/00000110/ff020200] Reset
----------------
IN: Reset
0x0000040e:  c004       stm      r0!, {r2}
0x00000410:  e7fb       b        #0x40a

Trace 0: 0x7f5110000740 [00800408/0000040e/00000110/ff020200] Reset
----------------
IN: Reset
0x0000040a:  4281       cmp      r1, r0
0x0000040c:  d001       beq      #0x412

Trace 0: 0x7f51100008c0 [00800408/0000040a/00000110/ff020200] Reset
Trace 0: 0x7f5110000740 [00800408/0000040e/00000110/ff020200] Reset
Trace 0: 0x7f51100008c0 [00800408/0000040a/00000110/ff020200] Reset
Stopped execution of TB chain before 0x7f51100008c0 [0000040a] Reset
Trace 0: 0x7f51100008c0 [00800408/0000040a/00000110/ff020200] Reset
----------------
IN: Reset
0x00000432:  480e       ldr      r0, [pc, #0x38]
0x00000434:  f44f 0170  mov.w    r1, #0xf00000
0x00000438:  6802       ldr      r2, [r0]
0x0000043a:  ea42 0201  orr.w    r2, r2, r1
0x0000043e:  6002       str      r2, [r0]
0x00000440:  f3bf 8f4f  dsb      sy
0x00000444:  f3bf 8f6f  isb      sy

Trace 0: 0x7f5110001200 [00800408/00000432/00000110/ff020200] Reset
cpu_io_recompile: rewound execution of TB to 00000438
----------------
IN: Reset
0x00000438:  6802       ldr      r2, [r0]

Trace 0: 0x7f5110001480 [00800408/00000438/00000110/ff038201] Reset
----------------
IN: Reset
0x0000043a:  ea42 0201  orr.w    r2, r2, r1
0x0000043e:  6002       str      r2, [r0]
0x00000440:  f3bf 8f4f  dsb      sy
0x00000444:  f3bf 8f6f  isb      sy

Trace 0: 0x7f5110001600 [00800408/0000043a/00000110/ff020200] Reset
cpu_io_recompile: rewound execution of TB to 0000043e
----------------
IN: Reset
0x0000043e:  6002       str      r2, [r0]

Trace 0: 0x7f51100017c0 [00800408/0000043e/00000110/ff038201] Reset
----------------
IN: Reset
0x00000440:  f3bf 8f4f  dsb      sy
0x00000444:  f3bf 8f6f  isb      sy

Trace 0: 0x7f5110001940 [00800408/00000440/00000010/ff020200] Reset
----------------
IN: Reset
0x00000448:  f003 fb80  bl       #0x3b4c
";

    fn parse(text: &str) -> (Profile, u64) {
        let mut p = TraceParser::default();
        for l in text.lines() {
            p.line(l);
        }
        (p.profile(), p.unmatched)
    }

    #[test]
    fn decodes_capstone_lines() {
        let i = parse_insn("0x00000434:  f44f 0170  mov.w    r1, #0xf00000").unwrap();
        assert_eq!(
            (i.addr, i.size, i.class, i.dests.clone()),
            (0x434, 4, Class::Alu, vec![1])
        );
        let i = parse_insn("0x0000604c:  bd80       pop      {r7, pc}").unwrap();
        assert_eq!(
            (i.size, i.class, i.words, i.address.clone()),
            (2, Class::LoadMultiple, 2, vec![13])
        );
        let i =
            parse_insn("0x0001006c:  ecb0 0a08  vldmia   r0!, {s0, s1, s2, s3, s4, s5, s6, s7}")
                .unwrap();
        assert_eq!(
            (i.class, i.words, i.address.clone()),
            (Class::FpLoadMultiple, 8, vec![0])
        );
        let i = parse_insn("0x000197e2:  ed2d 8b06  vpush    {d8, d9, d10}").unwrap();
        assert_eq!((i.class, i.words), (Class::FpStoreMultiple, 6));
        let i = parse_insn("0x0001a61a:  f850 a026  ldr.w    sl, [r0, r6, lsl #2]").unwrap();
        assert_eq!(
            (i.class, i.dests.clone(), i.address.clone()),
            (Class::Load, vec![10], vec![0, 6])
        );
        for (line, class) in [
            ("0x00010078:  ee04 ca00  vmla.f32 s24, s8, s0", Class::FpMac),
            (
                "0x00018bd0:  ec51 0b10  vmov     r0, r1, d0",
                Class::FpMovCore,
            ),
            ("0x0001832a:  eeb0 0a48  vmov.f32 s0, s16", Class::FpAlu),
            (
                "0x00018320:  e8df f001  tbb      [pc, r1]",
                Class::TableBranch,
            ),
            ("0x0000040c:  d001       beq      #0x412", Class::Branch),
            ("0x0000040c:  d801       bls      #0x412", Class::Branch),
            ("0x0000040c:  f000 b801  bl       #0x412", Class::Branch),
            ("0x00000408:  bf18       it       ne", Class::It),
            ("0x00000408:  bf1c       itt      ne", Class::It),
            ("0x00000408:  bf18       movne    r0, r1", Class::Alu),
            ("0x00000408:  ea50 0001  orrsne   r0, r0, r1", Class::Alu),
            (
                "0x00000408:  bf28       popls    {r4, pc}",
                Class::LoadMultiple,
            ),
            ("0x00000408:  fb00 f001  muls     r0, r1, r0", Class::Mul),
            (
                "0x00000408:  fba0 0101  umull    r0, r1, r0, r1",
                Class::Mul,
            ),
            ("0x00000408:  fb90 f0f1  sdiv     r0, r0, r1", Class::Div),
            (
                "0x00000408:  ee80 0a01  vdiv.f32 s0, s0, s2",
                Class::FpDivSqrt,
            ),
            (
                "0x00000408:  e9d0 2302  ldrd     r2, r3, [r0, #8]",
                Class::LoadDouble,
            ),
            ("0x00000408:  f3bf 8f4f  dsb      sy", Class::Barrier),
            (
                "0x00000408:  eef1 fa10  vmrs     APSR_nzcv, fpscr",
                Class::FpStatus,
            ),
            ("0x00000408:  bf00       frob     r0", Class::Other),
        ] {
            assert_eq!(parse_insn(line).map(|i| i.class), Some(class), "{line}");
        }
        assert_eq!(mnemonic_class("teq"), Some(Class::Alu));
        assert_eq!(mnemonic_class("frobnicate"), None);
        let umull = parse_insn("0x00000408:  fba0 0101  umull    r0, r1, r0, r1").unwrap();
        assert_eq!(umull.dests, vec![0, 1]);
        let cmp = parse_insn("0x0000040a:  4281       cmp      r1, r0").unwrap();
        assert!(cmp.dests.is_empty());
        let str_reg = parse_insn("0x00000408:  5088       str      r0, [r1, r2]").unwrap();
        assert!(str_reg.reg_offset);
    }

    #[test]
    fn parses_a_captured_trace() {
        let (p, unmatched) = parse(SNIPPET);
        assert_eq!(unmatched, 0);
        // Executions: bl ×1; push/mov/pop ×1; the 5-instruction block ×1; stm/b ×2;
        // cmp/beq ×2 (a third entry stopped before its first instruction); the 7-instruction
        // block up to 0x438 (2 instructions) then ldr, orr (rewound at 0x43e), str, dsb/isb.
        let count = |c| p.class_count(c);
        assert_eq!(p.instructions(), 24);
        assert_eq!(count(Class::Branch), 6);
        assert_eq!(count(Class::Alu), 7);
        assert_eq!(count(Class::Load), 4);
        assert_eq!(count(Class::Store), 1);
        assert_eq!(count(Class::StoreMultiple), 3);
        assert_eq!(count(Class::LoadMultiple), 1);
        assert_eq!(count(Class::Barrier), 2);
        assert_eq!(p.ops.get(&(Class::StoreMultiple, 2)), Some(&1)); // push {r7, lr}
        assert_eq!(p.ops.get(&(Class::StoreMultiple, 1)), Some(&2)); // stm r0!, {r2}
                                                                     // bl → 0x6048, pop → 0x404, b → 0x40a twice, the loop's exit to 0x432: the
                                                                     // stopped entry's transition is undone, the rewound blocks continue in sequence.
        assert_eq!(p.taken, 5);
        // ldr r1, [pc] after ldr r0, [pc].
        assert_eq!(p.pipelined, 1);
        assert_eq!(p.agu_stalls, 0);
    }

    #[test]
    fn pairs_loads_and_address_dependencies() {
        let block = Block::new(
            [
                "0x00000400:  3104       adds     r1, #4",
                "0x00000402:  6808       ldr      r0, [r1]",
                "0x00000404:  684a       ldr      r2, [r1, #4]",
                "0x00000406:  6813       ldr      r3, [r2]",
                "0x00000408:  5088       str      r0, [r1, r2]",
            ]
            .iter()
            .map(|l| parse_insn(l).unwrap())
            .collect(),
        );
        let p: Vec<(bool, bool)> = block
            .pairings
            .iter()
            .map(|p| (p.pipelined, p.agu_stall))
            .collect();
        // ldr after adds r1: AGU stall; ldr after ldr (r0 not an address): pipelined; ldr
        // through r2 right after loading r2: neither; a register-offset str after an ldr of
        // r3: pipelined.
        assert_eq!(
            p,
            [
                (false, false),
                (false, true),
                (true, false),
                (false, false),
                (true, false)
            ]
        );
        assert_eq!(block.end(), 0x40a);
    }

    /// A profile of `ops` with the given events.
    fn profile(ops: &[((Class, u8), i64)], taken: i64, pipelined: i64, agu: i64) -> Profile {
        Profile {
            ops: ops.iter().copied().collect(),
            taken,
            pipelined,
            agu_stalls: agu,
            ..Profile::default()
        }
    }

    #[test]
    fn differences_and_per_token() {
        let short = profile(&[((Class::Alu, 0), 100), ((Class::Load, 0), 40)], 10, 5, 1);
        let long = profile(
            &[
                ((Class::Alu, 0), 180),
                ((Class::Load, 0), 40),
                ((Class::FpMac, 0), 64),
            ],
            26,
            9,
            3,
        );
        let d = long.minus(&short);
        assert_eq!(
            d.ops,
            [((Class::Alu, 0), 80), ((Class::FpMac, 0), 64)]
                .into_iter()
                .collect()
        );
        assert_eq!((d.taken, d.pipelined, d.agu_stalls), (16, 4, 2));
        assert_eq!(d.instructions(), 144);
        let row = Row {
            core: "cortex-m4f",
            quant: Quant::F32,
            kv: Kv::F32,
            arith: Arith::Float,
            positions: 8,
            profile: d,
            systick_instructions: 144,
            image_bytes: 100,
            model: &M4_MODEL,
        };
        assert_eq!(row.instructions(), 18.0);
        assert!(row.agrees());
        let off = Row {
            systick_instructions: 115,
            ..row.clone()
        };
        assert!(!off.agrees());
        // 80 ALU + 64 × 3 VMLA − 4 + 2 + 16 × 2 = 302 per 8 positions.
        assert_eq!(row.cycles(0, false), 302.0 / 8.0);
        // + 5 × 16 refills from flash; + 5 × 7 lines (100 bytes) per position.
        assert_eq!(row.cycles(5, false), 382.0 / 8.0);
        assert_eq!(row.cycles(5, true), 382.0 / 8.0 + 35.0);
    }

    #[test]
    fn weights_by_the_trm() {
        // 10 ALU, 4 LDR (2 pipelined), 2 VLDM of 8 singles, 16 VMLA, 1 VDIV, 2 VLDR.64,
        // 1 POP of 3 registers, 3 taken transitions, 1 AGU stall:
        // 10 + (8 − 2) + 2 × 9 + 16 × 3 + 14 + 2 × 3 + 4 + 3 × 2 + 1 = 113 at 0 WS,
        // + 3 × 5 = 128 at 5 WS.
        let p = profile(
            &[
                ((Class::Alu, 0), 10),
                ((Class::Load, 0), 4),
                ((Class::FpLoadMultiple, 8), 2),
                ((Class::FpMac, 0), 16),
                ((Class::FpDivSqrt, 0), 1),
                ((Class::FpLoad, 2), 2),
                ((Class::LoadMultiple, 3), 1),
            ],
            3,
            2,
            1,
        );
        assert_eq!(M4_MODEL.cycles(&p, 0, 0), 113);
        assert_eq!(M4_MODEL.cycles(&p, 5, 0), 128);
        assert_eq!(M4_MODEL.cycles(&p, 5, 10), 178);
        assert_eq!(M33_MODEL.cycles(&p, 0, 0), 113);
        // Every class has exactly one entry.
        for c in CLASSES {
            assert_eq!(
                M4_TIMINGS.iter().filter(|(k, _, _)| *k == c).count(),
                1,
                "{c:?}"
            );
        }
        assert_eq!(model_of(M33).source, M33_MODEL.source);
        assert_eq!(model_of(M4F).source, M4_MODEL.source);
    }

    #[test]
    fn plans_six_rows() {
        let names: Vec<String> = plan()
            .iter()
            .map(|(b, q, k, a)| format!("{} {} {} {}", b.short, q.as_str(), k.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "m4f f32 f32 float",
                "m4f q8 q8 float",
                "m4f q8 q8 integer",
                "m33 f32 f32 float",
                "m33 q8 q8 float",
                "m33 q8 q8 integer"
            ]
        );
    }
}
