// AutoencoderKL's parameters (see parameter_layout.hpp). Original names: LDM's autoencoder (encoder.down.N.block.M,
// decoder.up.N numbered from the narrowest level, mid.attn_1's projections as 1x1 convolutions).
#include <string>

#include "sdrt/models/autoencoder_kl.hpp"

namespace sdrt::models {
namespace {

ResnetBlock2DArgs resnet(const BlockArgs& a, int64_t in_channels) {
  return {.in_channels = in_channels, .out_channels = a.out_channels};
}

void declare_mid_block(const LayoutScope& s, const BlockArgs& a) {
  const int64_t c = a.in_channels;
  declare_resnet(s("resnets.0", "block_1"), resnet(a, c), kLdmVaeResnetNames);
  const LayoutScope attention = s("attentions.0", "attn_1");
  attention("group_norm", "norm").norm(c);
  for (const auto& [name, original] : {std::pair{"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "proj_out"}})
    attention(name, original).linear(c, c, true, Stored::LinearOrConv1x1);
  declare_resnet(s("resnets.1", "block_2"), resnet(a, c), kLdmVaeResnetNames);
}

void declare_encoder(const LayoutScope& s, const VaeCoderArgs& e) {
  const auto& ch = e.block_out_channels;
  s["conv_in"].conv(e.in_channels, ch.at(0), 3);
  for (size_t i = 0; i < ch.size(); ++i) {
    const BlockArgs a = e.down_block(i);
    const LayoutScope block = s("down_blocks." + std::to_string(i), "down." + std::to_string(i));
    for (int j = 0; j < a.num_layers; ++j)
      declare_resnet(block("resnets." + std::to_string(j), "block." + std::to_string(j)),
                     resnet(a, j == 0 ? a.in_channels : a.out_channels), kLdmVaeResnetNames);
    if (a.add_downsample) block("downsamplers.0.conv", "downsample.conv").conv(a.out_channels, a.out_channels, 3);
  }
  declare_mid_block(s("mid_block", "mid"), e.mid_block());
  s("conv_norm_out", "norm_out").norm(ch.back());
  s["conv_out"].conv(ch.back(), 2 * e.out_channels, 3);
}

void declare_decoder(const LayoutScope& s, const VaeCoderArgs& d) {
  const auto& ch = d.block_out_channels;
  const size_t n = ch.size();
  s["conv_in"].conv(d.in_channels, ch.back(), 3);
  declare_mid_block(s("mid_block", "mid"), d.mid_block());
  for (size_t i = 0; i < n; ++i) {
    const BlockArgs a = d.up_block(i);
    const LayoutScope block = s("up_blocks." + std::to_string(i), "up." + std::to_string(n - 1 - i));
    for (int j = 0; j < a.num_layers; ++j)
      declare_resnet(block("resnets." + std::to_string(j), "block." + std::to_string(j)),
                     resnet(a, j == 0 ? a.in_channels : a.out_channels), kLdmVaeResnetNames);
    if (a.add_upsample) block("upsamplers.0.conv", "upsample.conv").conv(a.out_channels, a.out_channels, 3);
  }
  s("conv_norm_out", "norm_out").norm(ch.at(0));
  s["conv_out"].conv(ch.at(0), d.out_channels, 3);
}

}  // namespace

ParameterLayout vae_layout(const AutoencoderKLConfig& c) {
  ParameterLayout layout("AutoencoderKL");
  const LayoutScope s(layout);
  const int64_t latent = c.latent_channels;
  declare_encoder(s["encoder"], c.encoder_args());
  s["quant_conv"].conv(2 * latent, 2 * latent, 1);
  s["post_quant_conv"].conv(latent, latent, 1);
  declare_decoder(s["decoder"], c.decoder_args());
  return layout;
}

}  // namespace sdrt::models
