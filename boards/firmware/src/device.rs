//! The real boards' side of the firmware (feature `device`: `boards/stm32f429i-disco`,
//! `boards/nrf52840-dk`, `boards/rp-pico`, flashed and logged with probe-rs): the defmt
//! logger over RTT (`defmt-rtt`), panics through `panic-probe`, and the text of
//! [`crate::app::main`] on RTT and the board's serial port.
//!
//! A board implements [`Port`] (its clock, its serial port, how a run ends);
//! [`device_main!`](crate::device_main) is then its whole `main.rs`. RTT frames are
//! whole log calls, so the text is gathered into lines (one defmt line per text line,
//! cut at [`LINE`] bytes); the serial port gets every piece as it comes, with CR LF
//! line ends.

use cortex_m::peripheral::DCB;
use defmt_rtt as _; // the global defmt logger
use panic_probe as _; // core panics: message through defmt, then a fault

use crate::app;
use crate::lm::Memory;
use crate::Settings;

/// What the firmware needs from a real board.
pub trait Port {
    /// Microseconds since a fixed point (monotonic), for the speed figures.
    fn micros(&mut self) -> u64;
    /// Writes bytes to the board's serial port as they are; boards without one keep
    /// the default, which drops them.
    fn serial(&mut self, bytes: &[u8]) {
        let _ = bytes;
    }
    /// Ends the run. The default: with a debugger attached (`probe-rs run`), a
    /// semihosting exit with `code` ends the probe-rs session with it; without one,
    /// the core sleeps.
    fn finish(code: i32) -> ! {
        if DCB::is_debugger_attached() {
            semihosting::process::exit(code)
        }
        loop {
            cortex_m::asm::wfi();
        }
    }
}

/// A real board's firmware, the whole `main.rs` of a board crate: the build
/// script's `inputs.rs`, the run's [`Memory`] (a `static mut`) and the entry calling
/// [`main`].
///
/// `device_main!(NAME, PORT)`, or `device_main!(entry = PATH, NAME, PORT)` for a HAL's
/// own entry attribute (default `cortex_m_rt::entry`): the board as the firmware prints
/// it, and an expression giving its [`Port`].
#[macro_export]
macro_rules! device_main {
    ($name:expr, $port:expr) => {
        $crate::device_main!(entry = cortex_m_rt::entry, $name, $port);
    };
    (entry = $entry:path, $name:expr, $port:expr) => {
        mod inputs {
            include!(concat!(env!("OUT_DIR"), "/inputs.rs"));
        }

        #[$entry]
        fn main() -> ! {
            // cortex-m-rt hands this over as a `&'static mut`; all zeros, it lands in `.bss`.
            static mut MEMORY: inputs::Memory = inputs::Memory::new();
            $crate::device::main(
                $name,
                &inputs::MODEL.0,
                inputs::CONTEXT,
                &inputs::SETTINGS,
                MEMORY,
                $port,
            )
        }
    };
}

/// The firmware on a real board named `name`: the model in `image` at up to `context`
/// positions with `settings`, in `memory`, its text over RTT and `port`'s serial port.
/// Ends with [`Port::finish`] (0: the text was generated; 1: an error, logged).
pub fn main<P: Port, const ARENA: usize, const VOCAB: usize, const PROMPT: usize>(
    name: &str,
    image: &[u8],
    context: usize,
    settings: &Settings<'_>,
    memory: &mut Memory<ARENA, VOCAB, PROMPT>,
    port: P,
) -> ! {
    defmt::println!("microformer on {=str}", name);
    let mut board = Rtt {
        port,
        line: heapless::Vec::new(),
    };
    let code = app::main(image, context, settings, memory, &mut board);
    P::finish(code)
}

/// Microseconds from a 32-bit cycle counter (the DWT's, on the Cortex-M4F boards),
/// widened to 64 bits. Read it at least once per wrap of the counter (25 s at
/// 168 MHz, 67 s at 64 MHz): [`crate::app::main`] reads it when generation starts
/// and when it ends, about a second apart for the models these boards hold.
#[derive(Debug, Clone, Copy)]
pub struct CycleClock {
    /// Cycles counted so far.
    cycles: u64,
    /// The counter's value when last read.
    last: u32,
    /// Cycles per microsecond.
    per_us: u32,
}

impl CycleClock {
    /// Starts counting from the counter's value `now`, for a core clock of `core_hz`.
    pub const fn new(core_hz: u32, now: u32) -> Self {
        let per_us = core_hz / 1_000_000;
        CycleClock {
            cycles: 0,
            last: now,
            per_us: if per_us == 0 { 1 } else { per_us },
        }
    }

    /// Microseconds since [`CycleClock::new`], given the counter's value `now`.
    pub fn micros(&mut self, now: u32) -> u64 {
        self.cycles += u64::from(now.wrapping_sub(self.last));
        self.last = now;
        self.cycles / u64::from(self.per_us)
    }
}

/// Longest defmt text line; a longer line is cut into pieces of this size.
pub const LINE: usize = 96;

/// The text on RTT, in lines, and on the serial port.
struct Rtt<P: Port> {
    port: P,
    line: heapless::Vec<u8, LINE>,
}

impl<P: Port> Rtt<P> {
    fn flush(&mut self) {
        match core::str::from_utf8(&self.line) {
            Ok(s) => defmt::println!("{=str}", s),
            Err(_) => defmt::println!("{=[u8]:a}", &self.line[..]),
        }
        self.line.clear();
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.len() > LINE - self.line.len() && !self.line.is_empty() {
            self.flush();
        }
        for chunk in bytes.chunks(LINE) {
            // A chunk fits (the line was flushed above, or when it filled); if
            // not, it starts a new line.
            if self.line.extend_from_slice(chunk).is_err() {
                self.flush();
                let _ = self.line.extend_from_slice(chunk);
            }
            if self.line.is_full() {
                self.flush();
            }
        }
    }
}

impl<P: Port> app::Board for Rtt<P> {
    fn text(&mut self, bytes: &[u8]) {
        // Terminals want CR LF.
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.port.serial(b"\r\n");
                self.flush();
            }
            self.port.serial(line);
            self.push(line);
        }
    }

    fn text_end(&mut self, _generated: bool) {
        if !self.line.is_empty() {
            self.flush();
        }
        self.port.serial(b"\r\n");
    }

    fn micros(&mut self) -> Option<u64> {
        Some(self.port.micros())
    }

    fn needs_tokenizer(&self) -> bool {
        true
    }
}
