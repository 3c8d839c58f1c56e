//! The QEMU boards: one row per board crate under `boards/` (Cortex-M0, M3, M4F, M33), read by
//! every task that builds, runs or names one: the host stage's builds and lints, the
//! on-target stage, the demo, the families stage and the benchmarks. The rustup targets a
//! fresh machine needs are theirs too.
//!
//! Each crate's `.cargo/config.toml` passes the same machine and CPU to `boards/qemu-run.sh`
//! (the runner of `cargo test` and `cargo run`); the demo and the benchmarks start QEMU
//! themselves with the row's.

/// A QEMU board crate under `boards/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuBoard {
    /// Short name, as `cargo xtask demo --core` takes it.
    pub short: &'static str,
    /// The core, as the benchmarks name it (`--core` takes it too).
    pub core: &'static str,
    /// The core, as the on-target summary prints it.
    pub name: &'static str,
    /// Crate directory under `boards/` (and package and binary name).
    pub dir: &'static str,
    /// Its rustup target (set in the crate's `.cargo/config.toml`).
    pub target: &'static str,
    /// QEMU `-machine`.
    pub machine: &'static str,
    /// QEMU `-cpu`.
    pub cpu: &'static str,
    /// Where RAM starts (sections at or above it are RAM).
    pub ram_origin: u32,
    /// Whether it has room for a 260K-parameter model (MPS2: 4 MiB flash, 4 MiB RAM), so
    /// the demo can run on it.
    pub fits_model: bool,
}

/// Every QEMU board, in the order the stages run them. The memory maps are in each crate's
/// `memory.x`.
pub const BOARDS: &[QemuBoard] = &[
    QemuBoard {
        short: "m0",
        core: "cortex-m0",
        name: "Cortex-M0",
        dir: "qemu-m0",
        target: "thumbv6m-none-eabi",
        machine: "microbit",
        cpu: "cortex-m0",
        ram_origin: 0x2000_0000,
        fits_model: false,
    },
    QemuBoard {
        short: "m3",
        core: "cortex-m3",
        name: "Cortex-M3",
        dir: "qemu-m3",
        target: "thumbv7m-none-eabi",
        machine: "mps2-an385",
        cpu: "cortex-m3",
        ram_origin: 0x2000_0000,
        fits_model: true,
    },
    QemuBoard {
        short: "m4f",
        core: "cortex-m4f",
        name: "Cortex-M4F",
        dir: "qemu-m4f",
        target: "thumbv7em-none-eabihf",
        machine: "mps2-an386",
        cpu: "cortex-m4",
        ram_origin: 0x2000_0000,
        fits_model: true,
    },
    QemuBoard {
        short: "m33",
        core: "cortex-m33",
        name: "Cortex-M33",
        dir: "qemu-m33",
        target: "thumbv8m.main-none-eabihf",
        machine: "mps2-an505",
        cpu: "cortex-m33",
        // Boots in the Secure state: flash at 0x1000_0000, RAM at 0x3800_0000.
        ram_origin: 0x3800_0000,
        fits_model: true,
    },
];

/// The Cortex-M4F (the demo's default, the families stage's board).
pub const M4F: &QemuBoard = named("m4f");
/// The Cortex-M33 (Secure state).
pub const M33: &QemuBoard = named("m33");
/// The Cortex-M3 (no FPU).
pub const M3: &QemuBoard = named("m3");

/// The ARMv6-M (Cortex-M0/M0+) build of the Cortex-M3 board's firmware, run on the M3's
/// `mps2-an385` machine: the `microbit` machine's 16 KiB of RAM cannot hold a model, and an
/// ARMv6-M program is a valid ARMv7-M one (QEMU counts its instructions the same way). For
/// the benchmarks only; the stages run the real Cortex-M0 board.
pub const M0_ON_AN385: &QemuBoard = &QemuBoard {
    short: "m0-an385",
    core: "cortex-m0 (ARMv6-M on mps2-an385)",
    name: "ARMv6-M on the Cortex-M3 machine",
    dir: "qemu-m3",
    target: "thumbv6m-none-eabi",
    machine: "mps2-an385",
    cpu: "cortex-m3",
    ram_origin: 0x2000_0000,
    fits_model: true,
};

/// The row of [`BOARDS`] with this short name; evaluated at compile time for the constants
/// above, so a name missing from the table fails the build.
const fn named(short: &str) -> &'static QemuBoard {
    let mut i = 0;
    while i < BOARDS.len() {
        let (a, b) = (BOARDS[i].short.as_bytes(), short.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return &BOARDS[i];
            }
        }
        i += 1;
    }
    panic!("no QEMU board of that short name");
}

/// The board a name stands for: its short name (`m4f`) or its core (`cortex-m4f`).
pub fn find(name: &str) -> Option<&'static QemuBoard> {
    BOARDS.iter().find(|b| b.short == name || b.core == name)
}

/// The boards' rustup targets, each once, in table order: the Cortex-M targets the library
/// must build for (M0/M0+, M3, M4F/M7F, M33) and that a fresh machine installs.
pub fn targets() -> Vec<&'static str> {
    let mut targets: Vec<&'static str> = Vec::new();
    for b in BOARDS {
        if !targets.contains(&b.target) {
            targets.push(b.target);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_board() {
        assert_eq!(
            targets(),
            [
                "thumbv6m-none-eabi",
                "thumbv7m-none-eabi",
                "thumbv7em-none-eabihf",
                "thumbv8m.main-none-eabihf",
            ]
        );
        assert_eq!(
            (M4F.dir, M4F.machine, M4F.cpu),
            ("qemu-m4f", "mps2-an386", "cortex-m4")
        );
        assert_eq!((M33.dir, M33.ram_origin), ("qemu-m33", 0x3800_0000));
        assert_eq!(M3.target, "thumbv7m-none-eabi");
        assert_eq!(find("cortex-m33"), Some(M33));
        assert_eq!(find("m4f"), Some(M4F));
        assert_eq!(find("m7"), None);
        for b in BOARDS {
            assert_eq!(b.core, format!("cortex-{}", b.short));
            assert_eq!(b.dir, format!("qemu-{}", b.short));
            assert_eq!(b.name.to_lowercase(), b.core);
        }
    }
}
