//! The firmware's self-check: a head rotated by RoPE at position 3, in f32
//! through a compile-time table (checked against a run-time fill) and in Q15
//! through integer phases.

use microformer::num::fixed::Q15;
use microformer::pos::rope::{RopeLayout, RopePhases, RopeTable};
use microformer::pos::rope_const::ConstRopeTable;
use microformer::pos::rope_scaling::RopeConfig;

use crate::cases::check::{identical, lib};
use crate::out::{Failure, Out};

/// Head dim 8, θ = 10000, 16 positions.
pub const CONFIG: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 16);
/// The position the head is rotated to.
pub const POSITION: usize = 3;
/// The head before rotation.
pub const INPUT: [f32; 8] = [1.0, 0.0, 0.5, -0.5, 0.25, 0.75, -1.0, 0.125];

const _: () = assert!(ConstRopeTable::<16, 4>::check(&CONFIG).is_ok());
/// Built by the compiler: 512 bytes of flash.
static TABLE: ConstRopeTable<16, 4> = ConstRopeTable::new(&CONFIG, 16);

/// [`INPUT`] rotated at [`POSITION`] (interleaved pairs) with the
/// compile-time table; fails if a run-time table rotates it differently.
pub fn rotated() -> Result<[f32; 8], Failure> {
    let mut head = INPUT;
    lib(
        "const rotate",
        TABLE
            .as_table()
            .rotate(RopeLayout::Interleaved, POSITION, &mut head),
    )?;
    let (mut cos, mut sin) = ([0f32; 4], [0f32; 4]);
    lib(
        "fill",
        RopeTable::fill(&CONFIG, 16, POSITION, &mut cos, &mut sin),
    )?;
    let table = lib("table", RopeTable::new(&cos, &sin, 4))?;
    let mut again = INPUT;
    lib(
        "run-time rotate",
        table.rotate(RopeLayout::Interleaved, 0, &mut again),
    )?;
    for (k, (&a, &b)) in head.iter().zip(&again).enumerate() {
        identical("self-check: compile-time = run-time rotation", k, a, b)?;
    }
    Ok(head)
}

/// [`INPUT`] in Q15 (clamped to `[-1, 1)`) rotated at [`POSITION`] with
/// integer phases.
pub fn rotated_q15() -> Result<[Q15; 8], Failure> {
    let mut head = INPUT.map(|x| microformer::num::fixed::q15_from_f64(x as f64));
    let mut steps = [0u64; 4];
    let phases = lib("phases", RopePhases::new(&CONFIG, 16, &mut steps))?;
    lib(
        "phase rotate",
        phases.rotate(RopeLayout::Interleaved, POSITION, &mut head),
    )?;
    Ok(head)
}

pub(crate) fn case(out: &mut Out<'_>) -> Result<(), Failure> {
    out.f32s("self-check f32", &rotated()?);
    out.i16s("self-check Q15", &rotated_q15()?);
    Ok(())
}
