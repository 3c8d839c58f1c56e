//! Board glue for the STM32F429I-DISC1 discovery kit (STM32F429ZI, Cortex-M4F): the system
//! clock at 168 MHz from the internal 16 MHz oscillator (no dependence on how the kit's
//! 8 MHz HSE is fitted), the flash accelerator (prefetch and caches, set by the HAL), USART1
//! on PA9/PA10 at 115 200 baud (wired to the ST-LINK/V2-B virtual COM port on the DISC1;
//! the older STM32F429I-DISCO's ST-LINK has none), the DWT cycle counter as the clock, defmt
//! over RTT, and panics through panic-probe (probe-rs prints the backtrace).
#![no_std]

use cortex_m::peripheral::{DCB, DWT};
use defmt_rtt as _; // the global defmt logger
use panic_probe as _; // core panics: message through defmt, then a fault
use stm32f4xx_hal::pac::USART1;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use stm32f4xx_hal::serial::Tx;
use stm32f4xx_hal::{pac, serial};

pub use microformer_device as device;

/// The board, as the firmware prints it.
pub const NAME: &str = "STM32F429I-DISC1 (STM32F429ZI, Cortex-M4F at 168 MHz)";

/// The core clock.
pub const SYSCLK_HZ: u32 = 168_000_000;

/// The serial port's speed.
pub const BAUD: u32 = 115_200;

/// The board's peripherals the firmware uses.
pub struct Board {
    tx: Option<Tx<USART1>>,
    /// Cycles counted so far, and the counter's value when last read.
    cycles: u64,
    last: u32,
}

impl Board {
    /// Sets up the clocks, the cycle counter and the serial port.
    pub fn init() -> Self {
        let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take())
        else {
            defmt::panic!("the peripherals were taken before Board::init")
        };
        let mut rcc = dp.RCC.freeze(Config::hsi().sysclk(SYSCLK_HZ.Hz()));
        cp.DCB.enable_trace();
        cp.DWT.enable_cycle_counter();
        let gpioa = dp.GPIOA.split(&mut rcc);
        let tx = dp
            .USART1
            .tx(
                gpioa.pa9,
                serial::Config::default().baudrate(BAUD.bps()),
                &mut rcc,
            )
            .ok();
        if tx.is_none() {
            defmt::warn!("USART1 could not be set up: text over RTT only");
        }
        Board {
            tx,
            cycles: 0,
            last: DWT::cycle_count(),
        }
    }
}

impl device::app::Board for Board {
    fn micros(&mut self) -> u64 {
        // The 32-bit counter wraps every 25 s at 168 MHz: the run reads it far more often.
        let now = DWT::cycle_count();
        self.cycles += u64::from(now.wrapping_sub(self.last));
        self.last = now;
        self.cycles / u64::from(SYSCLK_HZ / 1_000_000)
    }

    fn serial(&mut self, bytes: &[u8]) {
        let Some(tx) = self.tx.as_mut() else { return };
        // Terminals want CR LF.
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                let _ = tx.bwrite_all(b"\r\n");
            }
            let _ = tx.bwrite_all(line);
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
