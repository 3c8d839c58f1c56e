//! Runs on the host: `memory.x` to the linker, the host's results of every on-target check
//! (`expected.rs`), the firmware's inputs (`inputs.rs`: a model image, settings and memory
//! sizes) and the generation tests' models and host-computed tokens (`generate.rs`: the
//! project's own models, and aidreams260K when the reference folder is there); see
//! `microformer_firmware::host::qemu_board`.

fn main() -> Result<(), microformer_firmware::host::BuildError> {
    use microformer_firmware::host;
    host::qemu_board(host::TestModels::Trained)
}
