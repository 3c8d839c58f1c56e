//! microformer on the STM32F429I-DISC1: generates text from the model image embedded at
//! build time and streams it over defmt/RTT and USART1 (the ST-LINK virtual COM port).
#![no_std]
#![no_main]

board::firmware::device_main!(board::NAME, board::Board::init());
