//! A RoPE table computed by the compiler: no sin/cos at run time.
//!
//! Run with `cargo run --example const_rope_table`.

use microformer::pos::rope::{RopeLayout, RopeTable};
use microformer::pos::rope_const::ConstRopeTable;
use microformer::pos::rope_scaling::RopeConfig;

/// Head dim 8 (4 rotary pairs), θ = 10000, 512 positions, no scaling.
const CFG: RopeConfig<'static> = RopeConfig::new(10_000.0, 8, 512);

// A bad configuration (odd dim, H != dim/2, ...) becomes a compile error here.
const _: () = assert!(ConstRopeTable::<512, 4>::check(&CFG).is_ok());

/// 512 × 4 cos and sin values in f32, evaluated at compile time (in flash on a target).
static TABLE: ConstRopeTable<512, 4> = ConstRopeTable::new(&CFG, 512);

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() -> Result<(), microformer::Error> {
    let table: RopeTable<'_> = TABLE.as_table();
    println!(
        "ConstRopeTable<512, 4>: {} positions x {} pairs, {} bytes ({} KiB) of cos+sin",
        table.positions(),
        table.pairs(),
        ConstRopeTable::<512, 4>::BYTES,
        ConstRopeTable::<512, 4>::BYTES / 1024
    );
    for p in [0usize, 1, 100, 511] {
        let (c, s) = table.row(p)?;
        println!("  p = {p:3}: cos {c:?}");
        println!("           sin {s:?}");
    }

    let q = [0.5f32, -1.0, 0.25, 2.0, 1.5, 0.0, -0.75, 1.0];
    let k = [1.0f32, 0.5, -0.5, 0.25, 0.0, 1.0, 2.0, -1.0];
    let (m, n) = (37usize, 5usize);
    let (mut qm, mut kn) = (q, k);
    table.rotate(RopeLayout::HalfSplit, m, &mut qm)?;
    table.rotate(RopeLayout::HalfSplit, n, &mut kn)?;
    println!("q rotated to position {m}: {qm:?}");
    println!("k rotated to position {n}: {kn:?}");

    // The score depends only on m - n: shift both positions by 400.
    let (mut qs, mut ks) = (q, k);
    table.rotate(RopeLayout::HalfSplit, m + 400, &mut qs)?;
    table.rotate(RopeLayout::HalfSplit, n + 400, &mut ks)?;
    println!(
        "q.k at ({m}, {n}) = {:.6}, at ({}, {}) = {:.6}",
        dot(&qm, &kn),
        m + 400,
        n + 400,
        dot(&qs, &ks)
    );
    Ok(())
}
