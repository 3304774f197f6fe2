// `sdrt serve` takes prompt_syntax on both API families (the A1111 route gives the CLI's
// `--prompt-syntax a1111` image, a bad value is a 400 naming the field) and --embeddings-dir.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "sdrt/io/image.hpp"
#include "support/cli_support.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kModel = std::string(SDRT_REFERENCE_DIR) + "/models/sd1-tiny";

// A server on a free loopback port (it prints "listening on http://127.0.0.1:PORT" once loaded).
class Server {
 public:
  Server() {
    dir_ = fs::temp_directory_path() / ("sdrt-serve-prompt-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "embeddings");
    fs::copy_file(std::string(SDRT_REFERENCE_DIR) + "/models/adapters/sd1-tiny-ti-a1111.safetensors",
                  dir_ / "embeddings" / "mytok.safetensors", fs::copy_options::overwrite_existing);
    const std::string embeddings = (dir_ / "embeddings").string();
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      const std::string out = (dir_ / "outputs").string();
      ::execl(SDRT_CLI_PATH, "sdrt", "serve", "--resource-path", kModel.c_str(), "--port", "0", "--output-dir",
              out.c_str(), "--disable-safety", "--embeddings-dir", embeddings.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    char c;
    while (line.size() < 4096 && ::read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(fds[0]);
    const auto colon = line.rfind(':');
    port_ = colon == std::string::npos ? 0 : std::atoi(line.c_str() + colon + 1);
    EXPECT_GT(port_, 0) << "server said: " << line;
  }
  ~Server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  httplib::Client client() const {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_read_timeout(120);
    return cli;
  }
  fs::path dir() const { return dir_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  fs::path dir_;
};

std::string b64decode(const std::string& s) {
  static const std::string table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : s) {
    const size_t p = table.find(c);
    if (p == std::string::npos) break;
    val = (val << 6) + static_cast<int>(p);
    bits += 6;
    if (bits >= 0) {
      out += static_cast<char>((val >> bits) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

const char* const kPrompt = "a (red:1.3) car, [fog], ((mountain road))";

TEST(ServerPromptSyntax, A1111RouteMatchesTheCli) {
  Server server;
  auto cli = server.client();
  const json request = {{"prompt", kPrompt}, {"seed", 42}, {"steps", 4}, {"cfg_scale", 7}, {"width", 64}, {"height", 64},
                        {"sampler_name", "Euler a"}, {"prompt_syntax", "a1111"},
                        {"override_settings", {{"randn_source", "CPU"}}}};
  const auto r = cli.Post("/sdapi/v1/txt2img", request.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body.substr(0, 400);
  const json j = json::parse(r->body);
  ASSERT_EQ(j["images"].size(), 1u);
  const fs::path served = server.dir() / "served.png";
  sdrt::test::write_bytes(served.string(), b64decode(j["images"][0]));
  const auto image_of = [&](const std::string& syntax) {
    const fs::path out = server.dir() / ("cli-" + syntax);
    const auto run = sdrt::test::run_sdrt("generate " + sdrt::test::shell_quote(kPrompt) + " --resource-path " + kModel +
                                          " --seed 42 --step-count 4 --guidance-scale 7 --width 64 --height 64"
                                          " --scheduler euler-a --rng torch --disable-safety --prompt-syntax " +
                                          syntax + " --output-path " + out.string());
    EXPECT_EQ(run.exit_code, 0) << run.output;
    const auto files = sdrt::test::folder_entries(out.string());
    EXPECT_EQ(files.size(), 1u);
    return sdrt::io::read_image((out / files.at(0)).string(), 3);
  };
  const auto served_image = sdrt::io::read_image(served.string(), 3);
  EXPECT_TRUE(served_image.pixels == image_of("a1111").pixels) << "server and CLI images differ";
  EXPECT_FALSE(served_image.pixels == image_of("plain").pixels) << "the weights must change the image";

  // The server's --embeddings-dir: a prompt naming "mytok" gets the CLI's --embedding mytok=... image.
  const json ti = {{"prompt", "a photo of mytok"}, {"seed", 42}, {"steps", 4}, {"cfg_scale", 7}, {"width", 64},
                   {"height", 64}, {"sampler_name", "Euler a"}, {"override_settings", {{"randn_source", "CPU"}}}};
  const auto tr = cli.Post("/sdapi/v1/txt2img", ti.dump(), "application/json");
  ASSERT_TRUE(tr);
  ASSERT_EQ(tr->status, 200) << tr->body.substr(0, 400);
  sdrt::test::write_bytes((server.dir() / "ti.png").string(), b64decode(json::parse(tr->body)["images"][0]));
  const fs::path ti_out = server.dir() / "cli-ti";
  const auto run = sdrt::test::run_sdrt("generate 'a photo of mytok' --resource-path " + kModel +
                                        " --seed 42 --step-count 4 --guidance-scale 7 --width 64 --height 64"
                                        " --scheduler euler-a --rng torch --disable-safety --embedding mytok=" +
                                        (server.dir() / "embeddings" / "mytok.safetensors").string() +
                                        " --output-path " + ti_out.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto ti_files = sdrt::test::folder_entries(ti_out.string());
  ASSERT_EQ(ti_files.size(), 1u);
  EXPECT_TRUE(sdrt::io::read_image((server.dir() / "ti.png").string(), 3).pixels ==
              sdrt::io::read_image((ti_out / ti_files[0]).string(), 3).pixels);

  for (const char* route : {"/sdapi/v1/txt2img", "/v1/images/generations"}) {
    const json bad = {{"prompt", "x"}, {"steps", 1}, {"prompt_syntax", "compel"}};
    const auto e = cli.Post(route, bad.dump(), "application/json");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, 400) << route << ": " << e->body;
    EXPECT_NE(e->body.find("prompt_syntax"), std::string::npos) << e->body;
  }
}

}  // namespace
