// Other on-disk forms of the reference's diffusers folders, written at test time: a .bin folder (what
// save_pretrained(safe_serialization=False) writes) and an original CompVis/Stability single file (the
// layout of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py, written here
// independently of sdrt's LDM converter so that the converter is checked, not mirrored).
#pragma once
#include <string>
#include <vector>

#include "sdrt/io/safetensors.hpp"  // NamedTensor

namespace sdrt::test {

// Copies the diffusers folder `src` (a pipeline or one model such as a ControlNet) to `dst`, every
// <stem>.safetensors written as a torch.save zip instead: model.safetensors -> pytorch_model.bin,
// diffusion_pytorch_model.safetensors -> diffusion_pytorch_model.bin. Other files are copied.
void write_bin_folder(const std::string& src, const std::string& dst);

// The tensors of a .safetensors file in file order (views of a mapping kept alive by each tensor).
std::vector<io::NamedTensor> read_safetensors_tensors(const std::string& path);

enum class LdmText {
  Clip,      // SD 1.x: cond_stage_model.transformer.<HF CLIP names>
  OpenClip,  // SD 2.x: cond_stage_model.model.<OpenCLIP names>, fused q/k/v
};

// transformers' CLIPTextModel tensors with `layers` layers -> OpenCLIP's text tower (open_clip names without a
// prefix: token_embedding, positional_embedding, transformer.resblocks.N.{ln_1, attn.in_proj_*, ...},
// ln_final), plus the tensors real SD 2.x files hold and diffusers drops (see ldm_tensors).
// sd2_extras false: the tower alone, as SGM files hold SDXL's OpenCLIP encoder (every block used).
std::vector<io::NamedTensor> open_clip_tensors(const std::vector<io::NamedTensor>& clip, int64_t layers,
                                               bool sd2_extras = true);

// The diffusers folder's unet, vae and text_encoder in LDM names. For OpenClip the file also gets what real
// SD 2.x files hold and diffusers drops: one more resblock after the kept ones (the 24th of ViT-H, unused by
// the penultimate-layer output; filled with -3 x block 0 so that using it would show), text_projection
// and logit_scale.
std::vector<io::NamedTensor> ldm_tensors(const std::string& diffusers_folder, LdmText text);
// An LDM yaml (v1-inference.yaml / v2-inference-v.yaml structure) describing the folder's UNet, VAE and
// scheduler: what shapes cannot tell (heads, latent size, parameterization, schedule) comes from here.
std::string ldm_yaml(const std::string& diffusers_folder, LdmText text);

// An SDXL base or refiner diffusers folder in Stability's SGM single-file names (the layout of diffusers'
// scripts/convert_diffusers_to_original_sdxl.py): conditioner.embedders.0.transformer.* (CLIP, base only)
// and conditioner.embedders.N.model.* (OpenCLIP with every block and text_projection as [hidden, proj]),
// label_emb.0.{0,2} for the text_time embedding.
std::vector<io::NamedTensor> sgm_tensors(const std::string& diffusers_folder);

// ldm_tensors() written as a .safetensors single file.
void write_ldm_safetensors(const std::string& diffusers_folder, LdmText text, const std::string& path);

// A kohya LoRA for sdxl-tiny (SDXL's UNet block structure) with its UNet modules renamed as kohya's SDXL
// trainer names them, after SGM's numbering (lora_unet_down_blocks_1_attentions_0_proj_in ->
// lora_unet_input_blocks_4_1_proj_in), written by hand here. Returns the number of tensors renamed.
size_t write_sgm_named_sdxl_lora(const std::string& src, const std::string& path);

}  // namespace sdrt::test
