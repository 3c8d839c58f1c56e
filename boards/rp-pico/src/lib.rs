//! Board glue for the Raspberry Pi Pico (RP2040, Cortex-M0+): the second-stage boot loader
//! for the Pico's W25Q flash, the system clock at 125 MHz from the 12 MHz crystal, UART0 on
//! GP0 (TX) and GP1 (RX) at 115 200 baud (the Pico's pins 1 and 2: the Raspberry Pi Debug
//! Probe's UART, or any 3.3 V USB serial adapter), the 1 MHz timer as the clock, defmt over
//! RTT, and panics through panic-probe (probe-rs prints the backtrace).
//!
//! The Cortex-M0+ has no FPU: the model's f32 maths runs in software, with rp2040-hal's
//! intrinsics routing the soft-float operations to the RP2040's optimised boot-ROM routines.
#![no_std]

use rp2040_hal::clocks::init_clocks_and_plls;
use rp2040_hal::fugit::RateExtU32;
use rp2040_hal::gpio::bank0::{Gpio0, Gpio1};
use rp2040_hal::gpio::{FunctionUart, Pin, Pins, PullDown};
use rp2040_hal::uart::{DataBits, Enabled, StopBits, UartConfig, UartPeripheral};
use rp2040_hal::{pac, Clock, Sio, Timer, Watchdog};

pub use microformer_firmware as firmware;

/// The second-stage boot loader (the first 256 bytes of flash): sets up the Pico's W25Q
/// flash for execute-in-place. `memory.x` places it and pulls it in by name.
#[link_section = ".boot2"]
#[no_mangle]
#[used]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The board, as the firmware prints it.
pub const NAME: &str = "Raspberry Pi Pico (RP2040, Cortex-M0+ at 125 MHz)";

/// The Pico's crystal.
pub const XOSC_HZ: u32 = 12_000_000;

/// The serial port's speed.
pub const BAUD: u32 = 115_200;

type UartPins = (
    Pin<Gpio0, FunctionUart, PullDown>,
    Pin<Gpio1, FunctionUart, PullDown>,
);

/// The board's peripherals the firmware uses.
pub struct Board {
    uart: Option<UartPeripheral<Enabled, pac::UART0, UartPins>>,
    timer: Timer,
}

impl Board {
    /// Sets up the clocks, the timer and the serial port.
    pub fn init() -> Self {
        let Some(mut p) = pac::Peripherals::take() else {
            defmt::panic!("the peripherals were taken before Board::init")
        };
        let mut watchdog = Watchdog::new(p.WATCHDOG);
        let Ok(clocks) = init_clocks_and_plls(
            XOSC_HZ,
            p.XOSC,
            p.CLOCKS,
            p.PLL_SYS,
            p.PLL_USB,
            &mut p.RESETS,
            &mut watchdog,
        ) else {
            defmt::panic!("the clocks did not start")
        };
        let timer = Timer::new(p.TIMER, &mut p.RESETS, &clocks);
        let sio = Sio::new(p.SIO);
        let pins = Pins::new(p.IO_BANK0, p.PADS_BANK0, sio.gpio_bank0, &mut p.RESETS);
        let uart_pins: UartPins = (
            pins.gpio0.into_function::<FunctionUart>(),
            pins.gpio1.into_function::<FunctionUart>(),
        );
        let uart = UartPeripheral::new(p.UART0, uart_pins, &mut p.RESETS)
            .enable(
                UartConfig::new(BAUD.Hz(), DataBits::Eight, None, StopBits::One),
                clocks.peripheral_clock.freq(),
            )
            .ok();
        if uart.is_none() {
            defmt::warn!("UART0 could not be set up: text over RTT only");
        }
        Board { uart, timer }
    }
}

impl firmware::device::Port for Board {
    fn micros(&mut self) -> u64 {
        self.timer.get_counter().ticks()
    }

    fn serial(&mut self, bytes: &[u8]) {
        if let Some(uart) = self.uart.as_ref() {
            uart.write_full_blocking(bytes);
        }
    }

    /// Ends the run: the core sleeps. (A Cortex-M0+ cannot tell whether a debugger is
    /// attached, and a semihosting call without one faults: `probe-rs run` keeps reading
    /// RTT until stopped with Ctrl-C.)
    fn finish(code: i32) -> ! {
        defmt::println!("finished with code {=i32}: Ctrl-C ends probe-rs", code);
        loop {
            cortex_m::asm::wfi();
        }
    }
}
