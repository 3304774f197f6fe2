// Textual-inversion files: every format of the pack and an A1111 .pt through the restricted unpickler,
// diffusers' multi-vector expansion and id numbering, --embeddings-dir lookup, and hostile files
// (truncated, wrong shapes, NaN, a pickle that calls a function), each with a clear error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "sdrt/pipeline/textual_inversion.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;
using namespace std::string_literals;

namespace sdrt {
namespace {

using pipeline::added_vocabulary;
using pipeline::load_textual_inversion;

std::string adapter(const std::string& file) { return test::reference_path("models/adapters/" + file); }

std::vector<float> values(const Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }

// A float32 safetensors file of the given tensors.
std::string write_embedding(const std::string& path, const std::vector<std::pair<std::string, Shape>>& tensors,
                            float value = 0.5f) {
  std::vector<io::NamedTensor> named;
  std::vector<std::shared_ptr<std::vector<float>>> keep;
  for (const auto& [name, shape] : tensors) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    auto data = std::make_shared<std::vector<float>>(static_cast<size_t>(n), value);
    keep.push_back(data);
    io::RawTensor raw{DType::F32, shape, reinterpret_cast<const uint8_t*>(data->data()), data->size() * 4, data, false};
    named.emplace_back(name, raw);
  }
  io::write_safetensors(path, named);
  return path;
}

TEST(TextualInversion, ReadsEveryFormatOfThePack) {
  const auto a1111 = load_textual_inversion(adapter("sd1-tiny-ti-a1111.safetensors"), "<tok>");
  ASSERT_EQ(a1111.vectors.size(), 1u);
  EXPECT_EQ(a1111.vectors[0].shape(), (Shape{2, 32}));
  EXPECT_EQ(a1111.tensor_names[0], "emb_params");
  const auto diffusers = load_textual_inversion(adapter("sd1-tiny-ti-diffusers-learned_embeds.safetensors"), "<tok2>");
  ASSERT_EQ(diffusers.vectors.size(), 1u);
  EXPECT_EQ(diffusers.vectors[0].shape(), (Shape{1, 32}));  // a [32] vector is one token
  const auto sdxl = load_textual_inversion(adapter("sdxl-tiny-ti-sdxl.safetensors"), "<x>");
  ASSERT_EQ(sdxl.vectors.size(), 2u);
  EXPECT_EQ(sdxl.vectors[0].shape(), (Shape{2, 16}));  // clip_l
  EXPECT_EQ(sdxl.vectors[1].shape(), (Shape{2, 20}));  // clip_g
  // Both SDXL halves, each for its own encoder; on a one-encoder model it is a clear error.
  EXPECT_EQ(added_vocabulary({sdxl}, 1, 2, 49408, 20).rows.shape(), (Shape{2, 20}));
  EXPECT_NE(test::error_message([&] { added_vocabulary({sdxl}, 0, 1, 49408, 32); })
                .find("SDXL embedding (clip_l, clip_g) needs a model with two text encoders"),
            std::string::npos);
}

TEST(TextualInversion, ExpandsMultiVectorTokensAsDiffusers) {
  const auto c = test::read_json(test::reference_path("cases/pipelines_v2/sd1_ti_a1111_s14_10steps.json"));
  const Weights ref = test::read_case(test::reference_path("cases/pipelines_v2/sd1_ti_a1111_s14_10steps.safetensors"));
  const auto ti = load_textual_inversion(adapter("sd1-tiny-ti-a1111.safetensors"), "<tok>");
  const auto tok0 = tokenizer::ClipTokenizer::from_folder(test::reference_path("models/sd1-tiny/tokenizer"));
  const auto added = added_vocabulary({ti}, 0, 1, tok0.vocab_size(), 32);
  EXPECT_EQ(values(added.rows), values(ti.vectors[0]));
  const auto tok = tok0.with_added_tokens(added.tokens);
  const auto ids = tok.encode(c.at("prompt").get<std::string>());
  const Tensor& expected = ref.stored("input_ids");
  ASSERT_EQ(static_cast<int64_t>(ids.size()), expected.numel());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], expected.data<int64_t>()[i]) << i;
  EXPECT_EQ(c.at("added_token_ids").at("<tok>"), 49408);
  EXPECT_EQ(c.at("added_token_ids").at("<tok>_1"), 49409);
  EXPECT_EQ(tok.ids("<tok>_1"), (std::vector<int64_t>{49409}));  // the second vector alone, as diffusers
  EXPECT_EQ(tok.tokenize("x<tok>y"), (std::vector<std::string>{"x</w>", "<tok>", "<tok>_1", "y</w>"}));
  EXPECT_EQ(tok.token_of(49409), "<tok>_1");
  EXPECT_EQ(tok0.ids("<tok>").size(), 3u);  // the original tokenizer is unchanged
  // A token that is already a word of the vocabulary is refused, as diffusers refuses it.
  const auto cat = load_textual_inversion(adapter("sd1-tiny-ti-a1111.safetensors"), "cat</w>");
  EXPECT_NE(test::error_message([&] { tok0.with_added_tokens(added_vocabulary({cat}, 0, 1, 49408, 32).tokens); })
                .find("already in the vocabulary"),
            std::string::npos);
}

TEST(TextualInversion, ReadsAnA1111PtThroughTheRestrictedUnpickler) {
  // What A1111 saves: {"string_to_token": {"*": 265}, "string_to_param": {"*": tensor [2, 32]}, "name", "step"}.
  auto le = [](uint64_t v, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
  };
  auto str = [&](const std::string& s) { return "X"s + le(s.size(), 4) + s; };
  auto integer = [&](int64_t v) { return "J"s + le(static_cast<uint64_t>(v), 4); };
  auto global = [](const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; };
  const std::string tensor = global("torch._utils", "_rebuild_tensor_v2") + "((" + str("storage") +
                             global("torch", "FloatStorage") + str("0") + str("cpu") + integer(64) + "tQ" + integer(0) +
                             "(" + integer(2) + integer(32) + "t(" + integer(32) + integer(1) + "t\x89" +
                             global("collections", "OrderedDict") + ")RtR";
  const std::string pkl = "\x80\x02}("s + str("string_to_token") + "}(" + str("*") + integer(265) + "u" +
                          str("string_to_param") + "}(" + str("*") + tensor + "u" + str("name") + str("tok") + str("step") +
                          integer(100) + "u.";
  const auto ref = load_textual_inversion(adapter("sd1-tiny-ti-a1111.safetensors"), "<tok>");
  const std::string data(reinterpret_cast<const char*>(ref.vectors[0].f32()), 64 * 4);
  const std::string dir = test::make_temp_dir("ti-pt");
  test::write_bytes(dir + "/tok.pt", test::stored_zip({{"archive/data.pkl", pkl}, {"archive/data/0", data}, {"archive/version", "3\n"}}));
  const auto pt = load_textual_inversion(dir + "/tok.pt", "<tok>");
  ASSERT_EQ(pt.vectors.size(), 1u);
  EXPECT_EQ(pt.tensor_names[0], "string_to_param.*");
  EXPECT_EQ(values(pt.vectors[0]), values(ref.vectors[0]));

  // A pickle that calls os.system is refused by name, and nothing runs.
  const std::string marker = dir + "/pwned";
  const std::string evil = "\x80\x02"s + global("posix", "system") + "(" + str("touch " + marker) + "tR.";
  test::write_bytes(dir + "/evil.pt", test::stored_zip({{"archive/data.pkl", evil}}));
  const std::string err = test::error_message([&] { load_textual_inversion(dir + "/evil.pt", "<evil>"); });
  EXPECT_NE(err.find("evil.pt"), std::string::npos) << err;
  EXPECT_NE(err.find("'posix.system'"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(marker));
}

TEST(TextualInversion, HostileFilesGetClearErrors) {
  const std::string dir = test::make_temp_dir("ti-bad");
  const auto load_error = [&](const std::string& path) {
    return test::error_message([&] { load_textual_inversion(path, "<t>"); });
  };
  // Truncated: the header promises more data than the file holds.
  const std::string good = test::read_bytes(adapter("sd1-tiny-ti-a1111.safetensors"));
  test::write_bytes(dir + "/truncated.safetensors", good.substr(0, good.size() - 40));
  EXPECT_NE(load_error(dir + "/truncated.safetensors").find("truncated.safetensors"), std::string::npos);
  test::write_bytes(dir + "/short.safetensors", good.substr(0, 5));
  EXPECT_NE(load_error(dir + "/short.safetensors").find("short.safetensors"), std::string::npos);
  test::write_bytes(dir + "/empty.pt", "");
  EXPECT_NE(load_error(dir + "/empty.pt").find("empty.pt"), std::string::npos);
  // Wrong shapes.
  const std::string e3 = load_error(write_embedding(dir + "/3d.safetensors", {{"emb_params", {2, 3, 32}}}));
  EXPECT_NE(e3.find("3d.safetensors: tensor 'emb_params' has shape [2, 3, 32]"), std::string::npos) << e3;
  const std::string e0 = load_error(write_embedding(dir + "/zero.safetensors", {{"emb_params", {0, 32}}}));
  EXPECT_NE(e0.find("zero.safetensors: tensor 'emb_params'"), std::string::npos) << e0;
  const std::string many = load_error(write_embedding(dir + "/many.safetensors", {{"emb_params", {100000, 1}}}));
  EXPECT_NE(many.find("expected 1 to 256 vectors"), std::string::npos) << many;
  const std::string nan = load_error(write_embedding(dir + "/nan.safetensors", {{"emb_params", {2, 32}}}, NAN));
  EXPECT_NE(nan.find("NaN"), std::string::npos) << nan;
  const std::string two = load_error(write_embedding(dir + "/two.safetensors", {{"a", {32}}, {"b", {32}}}));
  EXPECT_NE(two.find("two.safetensors: not a textual-inversion embedding"), std::string::npos) << two;
  const std::string half = load_error(write_embedding(dir + "/half.safetensors", {{"clip_l", {2, 16}}}));
  EXPECT_NE(half.find("needs both clip_l and clip_g"), std::string::npos) << half;
  // The wrong hidden size for the model names the file and the tensor.
  const auto wide = load_textual_inversion(write_embedding(dir + "/wide.safetensors", {{"emb_params", {2, 768}}}), "<w>");
  const std::string dim = test::error_message([&] { added_vocabulary({wide}, 0, 1, 49408, 32); });
  EXPECT_NE(dim.find("wide.safetensors: tensor 'emb_params' has vectors of size 768 but the text encoder's hidden size is 32"),
            std::string::npos)
      << dim;
}

GenerationConfig one_step(const std::string& prompt) {
  GenerationConfig g;
  g.prompt = prompt;
  g.step_count = 1;
  g.width = g.height = 64;
  g.disable_safety = true;
  return g;
}

TEST(TextualInversion, PipelineUsesExplicitAndFolderEmbeddings) {
  auto pipe = Pipeline::load(test::reference_path("models/sd1-tiny"));
  const std::string dir = test::make_temp_dir("ti-dir");
  fs::copy_file(adapter("sd1-tiny-ti-a1111.safetensors"), dir + "/mytok.safetensors");
  test::write_bytes(dir + "/broken.safetensors", "not a tensor file");
  test::write_bytes(dir + "/readme.txt", "ignored: not an embedding extension");
  GenerationConfig g = one_step("a photo of mytok");
  g.embeddings_dir = dir;
  const auto with_dir = pipe->generate(g);  // broken.safetensors is not named by the prompt: not read
  GenerationConfig explicit_config = one_step("a photo of mytok");
  explicit_config.embeddings.push_back({"mytok", adapter("sd1-tiny-ti-a1111.safetensors")});
  EXPECT_EQ(pipe->generate(explicit_config).images.at(0).pixels, with_dir.images.at(0).pixels);
  EXPECT_NE(pipe->generate(one_step("a photo of mytok")).images.at(0).pixels, with_dir.images.at(0).pixels);
  g.prompt = "a broken photo";
  EXPECT_NE(test::error_message([&] { pipe->generate(g); }).find("broken.safetensors"), std::string::npos);
  // The SDXL file on this one-encoder model, and a missing file, name the file.
  GenerationConfig sdxl = one_step("<x>");
  sdxl.embeddings.push_back({"<x>", adapter("sdxl-tiny-ti-sdxl.safetensors")});
  const std::string e = test::error_message([&] { pipe->generate(sdxl); });
  EXPECT_NE(e.find("sdxl-tiny-ti-sdxl.safetensors: an SDXL embedding"), std::string::npos) << e;
  GenerationConfig missing = one_step("x");
  missing.embeddings.push_back({"x", dir + "/nope.safetensors"});
  EXPECT_NE(test::error_message([&] { pipe->generate(missing); }).find("nope.safetensors"), std::string::npos);
  GenerationConfig no_token = one_step("x");
  no_token.embeddings.push_back({"", adapter("sd1-tiny-ti-a1111.safetensors")});
  EXPECT_NE(test::error_message([&] { pipe->generate(no_token); }).find("embeddings[0].token is empty"), std::string::npos);
}

}  // namespace
}  // namespace sdrt
