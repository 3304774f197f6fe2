// Lets the runtime open single-file LDM/SGM checkpoints and LDM-named VAE files: the runtime
// (sdrt_pipeline) does not link the converter's key maps, so a program that generates from such files
// links sdrt_convert and calls this once (sdrt's CLI, its C API and libsdrt.so do).
#pragma once

namespace sdrt::convert {

// Installs the converter as pipeline::open_model_source's CheckpointImporter (sdrt/pipeline/model_source.hpp).
// Idempotent and thread-safe.
void install_checkpoint_importer();

}  // namespace sdrt::convert
