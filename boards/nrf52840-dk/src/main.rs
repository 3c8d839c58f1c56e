//! microformer on the nRF52840-DK: generates text from the model image embedded at
//! build time and streams it over defmt/RTT and UARTE0 (the J-Link virtual COM port).
#![no_std]
#![no_main]

board::firmware::device_main!(board::NAME, board::Board::init());
