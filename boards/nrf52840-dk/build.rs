//! Runs on the host: `memory.x` to the linker and the firmware's inputs (`inputs.rs`: the
//! model image and the run settings) for this board's arena and context; see
//! `microformer_firmware::host::real_board`.

fn main() -> Result<(), microformer_firmware::host::BuildError> {
    use microformer_firmware::{budgets, host};
    host::real_board(budgets::NRF52840_DK)
}
