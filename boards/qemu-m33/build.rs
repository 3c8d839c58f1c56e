//! Runs on the host: hands `memory.x` to the linker, writes the host's results of every
//! on-target check (`expected.rs`: the same library and check code, run here), the
//! firmware's inputs (`inputs.rs`: a model image, settings and buffer sizes, see
//! `microformer_firmware::host::write_inputs`) and the generation tests' models and
//! host-computed tokens (`generate.rs`: aidreams260K, f32 and Q8).

use std::path::{Path, PathBuf};

use microformer_firmware::host;

fn main() -> Result<(), host::BuildError> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    host::linker_script(Path::new("memory.x"), &out)?;
    host::write_expected(&out.join("expected.rs"))?;
    host::write_inputs(&out)?;
    host::write_generate(&out, host::TestModels::Aidreams)
}
