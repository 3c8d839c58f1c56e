//! Runs on the host: hands `memory.x` to the linker and writes the firmware's inputs
//! (`inputs.rs`: the model image and the run settings; see
//! `microformer_device::host::write_inputs`) for this board's arena and context.

use std::path::{Path, PathBuf};

use microformer_device::{budgets, host};

fn main() -> Result<(), host::BuildError> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    host::linker_script(Path::new("memory.x"), &out)?;
    host::write_inputs(&out, budgets::STM32F429I_DISCO)
}
