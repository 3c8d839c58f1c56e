//! Board glue for the nRF52840-DK (nRF52840, Cortex-M4F at 64 MHz): the external 32 MHz
//! crystal (the serial port's baud clock), the flash instruction cache, UARTE0 on P0.06 (TX)
//! and P0.08 (RX) at 115 200 baud (wired to the J-Link virtual COM port), the DWT cycle
//! counter as the clock, defmt over RTT, and panics through panic-probe (probe-rs prints the
//! backtrace).
#![no_std]

use cortex_m::peripheral::{DCB, DWT};
use defmt_rtt as _; // the global defmt logger
use nrf52840_hal::gpio::{p0, Level};
use nrf52840_hal::pac;
use nrf52840_hal::uarte::{Baudrate, Parity, Pins, Uarte};
use nrf52840_hal::Clocks;
use panic_probe as _; // core panics: message through defmt, then a fault

pub use microformer_device as device;

/// The board, as the firmware prints it.
pub const NAME: &str = "nRF52840-DK (nRF52840, Cortex-M4F at 64 MHz)";

/// The core clock.
pub const CORE_HZ: u32 = 64_000_000;

/// Bytes copied to RAM per serial transfer: UARTE sends by DMA from RAM only, and the text
/// comes from the tokenizer in flash.
const CHUNK: usize = 64;

/// The board's peripherals the firmware uses.
pub struct Board {
    uart: Uarte<pac::UARTE0>,
    /// Cycles counted so far, and the counter's value when last read.
    cycles: u64,
    last: u32,
}

impl Board {
    /// Sets up the clocks, the cache, the cycle counter and the serial port.
    pub fn init() -> Self {
        let (Some(p), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take())
        else {
            defmt::panic!("the peripherals were taken before Board::init")
        };
        // The HAL keeps the clocks running once started; the handle is not needed after.
        let _clocks = Clocks::new(p.CLOCK).enable_ext_hfosc();
        p.NVMC.icachecnf.write(|w| w.cacheen().enabled());
        cp.DCB.enable_trace();
        cp.DWT.enable_cycle_counter();
        let port0 = p0::Parts::new(p.P0);
        let pins = Pins {
            txd: port0.p0_06.into_push_pull_output(Level::High).degrade(),
            rxd: port0.p0_08.into_floating_input().degrade(),
            cts: None,
            rts: None,
        };
        let uart = Uarte::new(p.UARTE0, pins, Parity::EXCLUDED, Baudrate::BAUD115200);
        Board {
            uart,
            cycles: 0,
            last: DWT::cycle_count(),
        }
    }

    /// Sends `bytes` through a RAM buffer.
    fn send(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; CHUNK];
        for chunk in bytes.chunks(CHUNK) {
            if let Some(dst) = buf.get_mut(..chunk.len()) {
                dst.copy_from_slice(chunk);
                let _ = self.uart.write(dst);
            }
        }
    }
}

impl device::app::Board for Board {
    fn micros(&mut self) -> u64 {
        // The 32-bit counter wraps every 67 s at 64 MHz: the run reads it far more often.
        let now = DWT::cycle_count();
        self.cycles += u64::from(now.wrapping_sub(self.last));
        self.last = now;
        self.cycles / u64::from(CORE_HZ / 1_000_000)
    }

    fn serial(&mut self, bytes: &[u8]) {
        // Terminals want CR LF.
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.send(b"\r\n");
            }
            self.send(line);
        }
    }
}

/// Ends the run. With a debugger attached (`probe-rs run`), a semihosting exit with
/// `code` ends the probe-rs session with it; without one, the core sleeps.
pub fn finish(code: i32) -> ! {
    if DCB::is_debugger_attached() {
        semihosting::process::exit(code)
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// After `defmt::panic!` has printed its message: a fault, which probe-rs reports.
#[defmt::panic_handler]
fn defmt_panic() -> ! {
    cortex_m::asm::udf()
}
