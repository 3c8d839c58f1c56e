//! Board glue for the STM32F429I-DISC1 discovery kit (STM32F429ZI, Cortex-M4F): the system
//! clock at 168 MHz from the internal 16 MHz oscillator (no dependence on how the kit's
//! 8 MHz HSE is fitted), the flash accelerator (prefetch and caches, set by the HAL), USART1
//! on PA9/PA10 at 115 200 baud (wired to the ST-LINK/V2-B virtual COM port on the DISC1;
//! the older STM32F429I-DISCO's ST-LINK has none), the DWT cycle counter as the clock, defmt
//! over RTT, and panics through panic-probe (probe-rs prints the backtrace).
#![no_std]

use cortex_m::peripheral::DWT;
use stm32f4xx_hal::pac::USART1;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use stm32f4xx_hal::serial::Tx;
use stm32f4xx_hal::{pac, serial};

pub use microformer_firmware as firmware;

use firmware::device::CycleClock;

/// The board, as the firmware prints it.
pub const NAME: &str = "STM32F429I-DISC1 (STM32F429ZI, Cortex-M4F at 168 MHz)";

/// The core clock.
pub const SYSCLK_HZ: u32 = 168_000_000;

/// The serial port's speed.
pub const BAUD: u32 = 115_200;

/// The board's peripherals the firmware uses.
pub struct Board {
    tx: Option<Tx<USART1>>,
    clock: CycleClock,
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
            clock: CycleClock::new(SYSCLK_HZ, DWT::cycle_count()),
        }
    }
}

impl firmware::device::Port for Board {
    fn micros(&mut self) -> u64 {
        self.clock.micros(DWT::cycle_count())
    }

    fn serial(&mut self, bytes: &[u8]) {
        if let Some(tx) = self.tx.as_mut() {
            let _ = tx.bwrite_all(bytes);
        }
    }
}
