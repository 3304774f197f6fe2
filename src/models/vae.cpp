#include "sdrt/models/vae.hpp"

namespace sdrt::models {
namespace {

constexpr float kEps = 1e-6f;
const kernels::Conv2dParams kPad1 = kernels::Conv2dParams::same(1, 1);

BlockArgs vae_block_args(const VaeCoderArgs& a, int num_layers, int64_t in_channels, int64_t out_channels) {
  BlockArgs b;
  b.num_layers = num_layers;
  b.in_channels = in_channels;
  b.out_channels = out_channels;
  b.resnet_groups = a.norm_num_groups;
  b.resnet_eps = kEps;
  b.downsample_padding = 0;
  b.num_attention_heads = 1;  // diffusers: attention_head_dim = channels, so one head
  return b;
}

std::vector<DownEncoderBlock2D> make_down_blocks(kernels::Backend& backend, const WeightScope& scope,
                                                 const VaeCoderArgs& a) {
  std::vector<DownEncoderBlock2D> blocks;
  for (size_t i = 0; i < a.block_out_channels.size(); ++i)
    blocks.emplace_back(backend, scope["down_blocks"][static_cast<int>(i)], a.down_block(i));
  return blocks;
}

std::vector<UpDecoderBlock2D> make_up_blocks(kernels::Backend& backend, const WeightScope& scope,
                                             const VaeCoderArgs& a) {
  std::vector<UpDecoderBlock2D> blocks;
  for (size_t i = 0; i < a.block_out_channels.size(); ++i)
    blocks.emplace_back(backend, scope["up_blocks"][static_cast<int>(i)], a.up_block(i));
  return blocks;
}

}  // namespace

BlockArgs VaeCoderArgs::down_block(size_t i) const {
  const auto& ch = block_out_channels;
  BlockArgs b = vae_block_args(*this, layers_per_block, ch[i == 0 ? 0 : i - 1], ch[i]);
  b.add_downsample = i + 1 < ch.size();
  return b;
}

BlockArgs VaeCoderArgs::up_block(size_t i) const {
  const auto& ch = block_out_channels;
  const size_t n = ch.size();
  BlockArgs b = vae_block_args(*this, layers_per_block + 1, ch[i == 0 ? n - 1 : n - i], ch[n - 1 - i]);
  b.add_upsample = i + 1 < n;
  return b;
}

BlockArgs VaeCoderArgs::mid_block() const {
  return vae_block_args(*this, 1, block_out_channels.back(), block_out_channels.back());
}

Encoder::Encoder(kernels::Backend& backend, const WeightScope& scope, const VaeCoderArgs& args)
    : conv_in_(backend, scope["conv_in"], args.in_channels, args.block_out_channels.at(0), 3, kPad1),
      down_blocks_(make_down_blocks(backend, scope, args)),
      mid_block_(backend, scope["mid_block"], args.mid_block()),
      conv_norm_out_(backend, scope["conv_norm_out"], args.norm_num_groups, args.block_out_channels.back(), kEps),
      conv_out_(backend, scope["conv_out"], args.block_out_channels.back(), 2 * args.out_channels, 3, kPad1) {}

Tensor Encoder::forward(const Tensor& x) const {
  Tensor h = conv_in_(x);
  for (const auto& block : down_blocks_) h = block.forward(std::move(h));
  h = mid_block_.forward(std::move(h));
  return conv_out_(conv_norm_out_(h, kernels::Activation::SiLU, kernels::OutputUse::MatmulInput));
}

Decoder::Decoder(kernels::Backend& backend, const WeightScope& scope, const VaeCoderArgs& args)
    : conv_in_(backend, scope["conv_in"], args.in_channels, args.block_out_channels.back(), 3, kPad1),
      mid_block_(backend, scope["mid_block"], args.mid_block()),
      up_blocks_(make_up_blocks(backend, scope, args)),
      conv_norm_out_(backend, scope["conv_norm_out"], args.norm_num_groups, args.block_out_channels.at(0), kEps),
      conv_out_(backend, scope["conv_out"], args.block_out_channels.at(0), args.out_channels, 3, kPad1) {}

Tensor Decoder::forward(const Tensor& z) const {
  Tensor h = mid_block_.forward(conv_in_(z));
  for (const auto& block : up_blocks_) h = block.forward(std::move(h));
  return conv_out_(conv_norm_out_(h, kernels::Activation::SiLU, kernels::OutputUse::MatmulInput));
}

}  // namespace sdrt::models
