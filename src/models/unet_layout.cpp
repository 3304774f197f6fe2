// The UNet's and the ControlNet's parameters (see parameter_layout.hpp). The blocks come from the configs'
// own block arguments, which the model classes are built from. Original names: LDM/SGM's openaimodel.py,
// whose input_blocks and output_blocks number every resnet (with its attention) and every resampler in turn.
#include <string>

#include "sdrt/models/controlnet.hpp"
#include "sdrt/models/unet_2d_condition.hpp"

namespace sdrt::models {
namespace {

ResnetBlock2DArgs resnet(const BlockArgs& a, int64_t in_channels) {
  return {.in_channels = in_channels, .out_channels = a.out_channels, .temb_channels = a.temb_channels};
}

// Only the product of heads and head size shapes a tensor.
Transformer2DArgs transformer(const BlockArgs& a, int64_t channels) {
  return {.num_attention_heads = 1,
          .attention_head_dim = channels,
          .in_channels = channels,
          .num_layers = a.transformer_layers_per_block,
          .cross_attention_dim = a.cross_attention_dim,
          .use_linear_projection = a.use_linear_projection};
}

bool has_attention(const std::string& block_type) { return block_type.rfind("CrossAttn", 0) == 0; }

// "input_blocks.N" / "output_blocks.N" for the next block of the original layout.
class OriginalBlocks {
 public:
  OriginalBlocks(std::string name, int next) : name_(std::move(name)), next_(next) {}
  std::string next() { return name_ + "." + std::to_string(next_++); }

 private:
  std::string name_;
  int next_;
};

// time_embedding, add_embedding, conv_in, down_blocks and mid_block: what the UNet and the ControlNet share.
void declare_encoder(const LayoutScope& s, const UNetEncoderConfig& c) {
  const int64_t c0 = c.block_out_channels.at(0), temb = c.time_embed_dim();
  s("time_embedding.linear_1", "time_embed.0").linear(c0, temb);
  s("time_embedding.linear_2", "time_embed.2").linear(temb, temb);
  if (c.text_time_embedding) {  // SGM's vector conditioning
    s("add_embedding.linear_1", "label_emb.0.0").linear(c.projection_class_embeddings_input_dim, temb);
    s("add_embedding.linear_2", "label_emb.0.2").linear(temb, temb);
  }
  s("conv_in", "input_blocks.0.0").conv(c.in_channels, c0, 3);

  OriginalBlocks input("input_blocks", 1);
  for (size_t i = 0; i < c.down_block_types.size(); ++i) {
    const BlockArgs a = c.down_block(i);
    const LayoutScope block = s["down_blocks"][static_cast<int64_t>(i)];
    for (int j = 0; j < a.num_layers; ++j) {
      const std::string original = input.next();
      declare_resnet(block["resnets"][j].originally(original + ".0"), resnet(a, j == 0 ? a.in_channels : a.out_channels),
                     kLdmUNetResnetNames);
      if (has_attention(c.down_block_types[i]))
        declare_transformer_2d(block["attentions"][j].originally(original + ".1"), transformer(a, a.out_channels));
    }
    if (a.add_downsample)
      block["downsamplers"][0]["conv"].originally(input.next() + ".0.op").conv(a.out_channels, a.out_channels, 3);
  }

  const BlockArgs mid = c.mid_block();
  declare_resnet(s("mid_block.resnets.0", "middle_block.0"), resnet(mid, mid.in_channels), kLdmUNetResnetNames);
  declare_transformer_2d(s("mid_block.attentions.0", "middle_block.1"), transformer(mid, mid.in_channels));
  declare_resnet(s("mid_block.resnets.1", "middle_block.2"), resnet(mid, mid.in_channels), kLdmUNetResnetNames);
}

}  // namespace

ParameterLayout unet_layout(const UNet2DConditionConfig& c) {
  ParameterLayout layout("UNet2DConditionModel");
  const LayoutScope s(layout);
  declare_encoder(s, c);

  OriginalBlocks output("output_blocks", 0);
  for (size_t i = 0; i < c.up_block_types.size(); ++i) {
    const BlockArgs a = c.up_block(i);
    const LayoutScope block = s["up_blocks"][static_cast<int64_t>(i)];
    std::string original;
    // Resnet j sees its input (the block below's output first) concatenated with a skip connection.
    for (int j = 0; j < a.num_layers; ++j) {
      original = output.next();
      const int64_t input = j == 0 ? a.prev_output_channel : a.out_channels;
      const int64_t skip = j == a.num_layers - 1 ? a.in_channels : a.out_channels;
      declare_resnet(block["resnets"][j].originally(original + ".0"), resnet(a, input + skip), kLdmUNetResnetNames);
      if (has_attention(c.up_block_types[i]))
        declare_transformer_2d(block["attentions"][j].originally(original + ".1"), transformer(a, a.out_channels));
    }
    // The original keeps the upsampler in the block of the last resnet, after its attention if any.
    const std::string upsampler = original + (has_attention(c.up_block_types[i]) ? ".2" : ".1") + ".conv";
    if (a.add_upsample) block["upsamplers"][0]["conv"].originally(upsampler).conv(a.out_channels, a.out_channels, 3);
  }
  const int64_t c0 = c.block_out_channels.at(0);
  s("conv_norm_out", "out.0").norm(c0);
  s("conv_out", "out.2").conv(c0, c.out_channels, 3);
  return layout;
}

ParameterLayout controlnet_layout(const ControlNetConfig& c) {
  ParameterLayout layout("ControlNetModel");
  const LayoutScope s = LayoutScope(layout).without_original();
  declare_encoder(s, c);

  const LayoutScope embedding = s["controlnet_cond_embedding"];
  const auto& ch = c.conditioning_embedding_out_channels;
  embedding["conv_in"].conv(c.conditioning_channels, ch.at(0), 3);
  for (size_t i = 0; i + 1 < ch.size(); ++i) {
    embedding["blocks"][static_cast<int64_t>(2 * i)].conv(ch[i], ch[i], 3);
    embedding["blocks"][static_cast<int64_t>(2 * i + 1)].conv(ch[i], ch[i + 1], 3);
  }
  embedding["conv_out"].conv(ch.back(), c.block_out_channels.at(0), 3);

  const auto res_channels = c.res_sample_channels();
  for (size_t i = 0; i < res_channels.size(); ++i)
    s["controlnet_down_blocks"][static_cast<int64_t>(i)].conv(res_channels[i], res_channels[i], 1);
  s["controlnet_mid_block"].conv(c.block_out_channels.back(), c.block_out_channels.back(), 1);
  return layout;
}

}  // namespace sdrt::models
