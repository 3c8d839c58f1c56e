//! Board glue for the nRF52840-DK (nRF52840, Cortex-M4F at 64 MHz): the external 32 MHz
//! crystal (the serial port's baud clock), the flash instruction cache, UARTE0 on P0.06 (TX)
//! and P0.08 (RX) at 115 200 baud (wired to the J-Link virtual COM port), the DWT cycle
//! counter as the clock, defmt over RTT, and panics through panic-probe (probe-rs prints the
//! backtrace).
#![no_std]

use cortex_m::peripheral::DWT;
use nrf52840_hal::gpio::{p0, Level};
use nrf52840_hal::pac;
use nrf52840_hal::uarte::{Baudrate, Parity, Pins, Uarte};
use nrf52840_hal::Clocks;

pub use microformer_firmware as firmware;

use firmware::device::CycleClock;

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
    clock: CycleClock,
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
            clock: CycleClock::new(CORE_HZ, DWT::cycle_count()),
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

impl firmware::device::Port for Board {
    fn micros(&mut self) -> u64 {
        self.clock.micros(DWT::cycle_count())
    }

    fn serial(&mut self, bytes: &[u8]) {
        self.send(bytes);
    }
}
