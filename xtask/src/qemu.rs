//! Runs a firmware ELF under QEMU (the demo, the families stage, the benchmarks): QEMU's
//! semihosting stderr is the device's text, its stdout the defmt frames, decoded by
//! `defmt-print` into the log; a run longer than `QEMU_TIMEOUT` seconds (default 600) is
//! stopped and fails.
//!
//! The on-target stage runs its suites through cargo instead, with `boards/qemu-run.sh` as
//! the runner.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::qemu_boards::QemuBoard;
use crate::util::to_stderr;

/// Seconds a run may take when `QEMU_TIMEOUT` does not say.
const DEFAULT_TIMEOUT: u64 = 600;

/// What a firmware run printed: the device's text and its decoded logs.
pub struct QemuRun {
    /// Semihosting stderr: the generated text.
    pub text: Vec<u8>,
    /// defmt-print's output, line by line.
    pub log: Vec<String>,
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

/// The run's time limit: `QEMU_TIMEOUT` seconds, or [`DEFAULT_TIMEOUT`].
fn time_limit() -> Duration {
    let secs = std::env::var("QEMU_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT);
    Duration::from_secs(secs)
}

/// Runs `elf` on `board` under QEMU with `cmdline` (`-append`), optionally counting
/// instructions (`-icount shift=0`). The text goes to our stdout as it comes when `echo`,
/// and is returned either way; the decoded log is echoed to stderr and returned. Fails on
/// a non-zero exit (a failed run, a fault) or a run longer than `QEMU_TIMEOUT` seconds
/// (default 600).
pub fn run_qemu(
    board: &QemuBoard,
    elf: &Path,
    cmdline: &str,
    icount: bool,
    echo: bool,
) -> Result<QemuRun, String> {
    let limit = time_limit();
    let mut qemu = Command::new("qemu-system-arm");
    qemu.args(["-machine", board.machine, "-cpu", board.cpu, "-nographic"])
        .args(["-semihosting-config", "enable=on,target=native"]);
    if icount {
        qemu.args(["-icount", "shift=0"]);
    }
    qemu.arg("-kernel")
        .arg(elf)
        .arg("-append")
        .arg(cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "xtask: $ qemu-system-arm -machine {} -cpu {}{} -kernel {} -append {cmdline:?} | defmt-print",
        board.machine,
        board.cpu,
        if icount { " -icount shift=0" } else { "" },
        elf.display()
    );
    let mut q = qemu
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
    let mut err = q.stderr.take().ok_or("no QEMU stderr")?;
    let text = thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let out = std::io::stdout();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if echo {
                let mut o = out.lock();
                let _ = o.write_all(&buf[..n]);
                let _ = o.flush();
            }
        }
        all
    });
    let mut decoded = print.stdout.take().ok_or("no defmt-print stdout")?;
    let log = thread::spawn(move || {
        let mut s = String::new();
        let _ = decoded.read_to_string(&mut s);
        s
    });
    let status = wait_with_limit(&mut q, limit);
    let _ = print.wait();
    let text = text.join().unwrap_or_default();
    let log: Vec<String> = log
        .join()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    for l in &log {
        eprintln!("{l}");
    }
    let status = status?;
    if !status.success() {
        return Err(format!("the firmware failed under QEMU ({status})"));
    }
    Ok(QemuRun { text, log })
}
