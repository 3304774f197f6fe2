// A small line-based reader for the few LDM yaml settings the converter needs. It understands block
// mappings by indentation, comments, quoted scalars, and flow ([a, b]) or block (- a) lists of scalars;
// anything else is skipped. Only the keys LdmConfig reads are kept (a hostile yaml must not make every
// key store its parent's path), and every line is looked at a bounded number of times: linear time.
#include <charconv>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/convert/ldm_checkpoint.hpp"

namespace sdrt::pipeline {

namespace {

struct YamlValue {
  std::string scalar;
  std::vector<std::string> items;
  bool is_list = false;
  int line = 0;
};

using YamlPaths = std::map<std::string, YamlValue>;

const std::string kModel = "model.params.", kUnet = kModel + "unet_config.params.",
                  kNetwork = kModel + "network_config.params.", kVae = kModel + "first_stage_config.params.ddconfig.";
const char* const kUnetKeys[] = {"num_heads", "num_head_channels", "context_dim", "model_channels", "num_res_blocks",
                                 "in_channels", "out_channels", "transformer_depth", "use_linear_in_transformer",
                                 "channel_mult", "attention_resolutions", "adm_in_channels"};

// Every key parse_ldm_yaml reads; nothing else is stored.
const std::vector<std::string>& wanted_paths() {
  static const std::vector<std::string> paths = [] {
    std::vector<std::string> p;
    for (const char* k : {"linear_start", "linear_end", "scale_factor", "timesteps", "image_size", "parameterization"})
      p.push_back(kModel + k);
    for (const char* k : kUnetKeys) {  // LDM's unet_config, SGM's network_config
      p.push_back(kUnet + k);
      p.push_back(kNetwork + k);
    }
    for (const char* k : {"ch", "num_res_blocks", "z_channels", "ch_mult"}) p.push_back(kVae + k);
    return p;
  }();
  return paths;
}

bool is_wanted(const std::string& path) {
  const auto& w = wanted_paths();
  return std::find(w.begin(), w.end(), path) != w.end();
}

// Whether some wanted key lies below `path`; keys elsewhere are never given a path.
bool leads_to_wanted(const std::string& path) {
  for (const auto& w : wanted_paths())
    if (w.size() > path.size() && w[path.size()] == '.' && w.compare(0, path.size(), path) == 0) return true;
  return false;
}

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \t") - b + 1));
}

std::string unquote(const std::string& s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front())
    return s.substr(1, s.size() - 2);
  return s;
}

// Drops a comment: '#' at the start or after whitespace, outside quotes.
std::string_view strip_comment(std::string_view line) {
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
      return line.substr(0, i);
    }
  }
  return line;
}

// Position of the ':' ending a mapping key (followed by whitespace or the end), outside quotes.
size_t key_colon(const std::string& content) {
  char quote = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    const char c = content[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == ':' && (i + 1 == content.size() || content[i + 1] == ' ' || content[i + 1] == '\t')) {
      return i;
    }
  }
  return std::string::npos;
}

std::vector<std::string> split_flow_list(const std::string& inner) {
  std::vector<std::string> items;
  std::stringstream ss(inner);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = unquote(trim(item));
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

size_t indent_of(std::string_view line) {
  const size_t n = line.find_first_not_of(" \t");
  return n == std::string::npos ? line.size() : n;
}

YamlPaths parse_paths(const std::string& text) {
  std::vector<std::string_view> lines;  // views into text: no copy per line
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(strip_comment(line));
    start = end + 1;
  }
  struct Open {
    size_t indent;
    std::string path;  // empty: leads to no wanted key
  };
  std::vector<Open> stack;  // mapping keys whose value is on the following lines
  YamlPaths paths;
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string content = trim(lines[n]);
    if (content.empty() || content == "---" || content == "...") continue;
    const size_t indent = indent_of(lines[n]);
    const int line_no = static_cast<int>(n + 1);

    if (content == "-" || content.rfind("- ", 0) == 0) {  // block list item of the innermost open key
      while (!stack.empty() && stack.back().indent > indent) stack.pop_back();
      if (stack.empty() || !is_wanted(stack.back().path)) continue;
      YamlValue& v = paths[stack.back().path];
      const std::string item = unquote(trim(content.substr(1)));
      if (key_colon(item) != std::string::npos) continue;  // lists of mappings are not needed
      v.is_list = true;
      v.items.push_back(item);
      continue;
    }
    const size_t colon = key_colon(content);
    if (colon == std::string::npos) continue;
    while (!stack.empty() && stack.back().indent >= indent) stack.pop_back();
    const std::string key = unquote(trim(content.substr(0, colon)));
    std::string path;
    if (stack.empty() || !stack.back().path.empty()) {
      path = stack.empty() ? key : stack.back().path + "." + key;
      if (!is_wanted(path) && !leads_to_wanted(path)) path.clear();
    }
    std::string value = trim(content.substr(colon + 1));
    YamlValue v;
    v.line = line_no;
    if (value.empty()) {
      stack.push_back({indent, path});
    } else if (value.front() == '[') {
      // Lines are joined up to the ']', each searched once: an unclosed list stays linear. Only a wanted
      // list's text is kept.
      size_t close = value.find(']');
      while (close == std::string::npos && n + 1 < lines.size()) {
        const std::string next = trim(lines[++n]);
        const size_t at = next.find(']');
        if (path.empty()) {
          close = at;
          continue;
        }
        value += ' ';
        if (at != std::string::npos) close = value.size() + at;
        value += next;
      }
      if (close == std::string::npos || path.empty()) continue;
      v.is_list = true;
      v.items = split_flow_list(value.substr(1, close - 1));
    } else if (value == "|" || value == ">" || value.rfind("|-", 0) == 0 || value.rfind(">-", 0) == 0) {
      while (n + 1 < lines.size() && (trim(lines[n + 1]).empty() || indent_of(lines[n + 1]) > indent)) ++n;
      continue;  // block scalars hold nothing the converter reads
    } else {
      v.scalar = unquote(value);
    }
    if (is_wanted(path)) paths[path] = v;
  }
  return paths;
}

class YamlReader {
 public:
  YamlReader(const std::string& text, std::string source) : paths_(parse_paths(text)), source_(std::move(source)) {}

  std::optional<int64_t> integer(const std::string& path) const {
    const YamlValue* v = scalar(path);
    if (!v) return std::nullopt;
    return parse_int(*v, v->scalar, path);
  }
  std::optional<double> number(const std::string& path) const {
    const YamlValue* v = scalar(path);
    if (!v) return std::nullopt;
    double out = 0;
    const std::string& s = v->scalar;
    const char* begin = s.data() + (s.size() > 1 && s[0] == '+' ? 1 : 0);
    auto [end, ec] = std::from_chars(begin, s.data() + s.size(), out);
    if (ec != std::errc() || end != s.data() + s.size()) fail(*v, path, "a number");
    return out;
  }
  std::optional<bool> boolean(const std::string& path) const {
    const YamlValue* v = scalar(path);
    if (!v) return std::nullopt;
    for (const char* t : {"true", "True", "TRUE", "yes", "Yes", "on", "On"})
      if (v->scalar == t) return true;
    for (const char* f : {"false", "False", "FALSE", "no", "No", "off", "Off"})
      if (v->scalar == f) return false;
    fail(*v, path, "true or false");
  }
  std::optional<std::string> string(const std::string& path) const {
    const YamlValue* v = scalar(path);
    if (!v) return std::nullopt;
    return v->scalar;
  }
  bool has(const std::string& path) const { return paths_.count(path) != 0; }
  bool is_list(const std::string& path) const {
    auto it = paths_.find(path);
    return it != paths_.end() && it->second.is_list;
  }
  std::optional<std::vector<int64_t>> integers(const std::string& path) const {
    auto it = paths_.find(path);
    if (it == paths_.end()) return std::nullopt;
    const YamlValue& v = it->second;
    if (!v.is_list) fail(v, path, "a list of integers");
    std::vector<int64_t> out;
    for (const auto& item : v.items) out.push_back(parse_int(v, item, path));
    return out;
  }

 private:
  // nullptr when absent or null; a list where a scalar belongs is an error.
  const YamlValue* scalar(const std::string& path) const {
    auto it = paths_.find(path);
    if (it == paths_.end()) return nullptr;
    const YamlValue& v = it->second;
    if (v.is_list) fail(v, path, "a single value");
    if (v.scalar.empty() || v.scalar == "null" || v.scalar == "~") return nullptr;
    return &v;
  }
  int64_t parse_int(const YamlValue& v, const std::string& s, const std::string& path) const {
    int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec != std::errc() || end != s.data() + s.size()) fail(v, path, "an integer");
    return out;
  }
  [[noreturn]] void fail(const YamlValue& v, const std::string& path, const std::string& expected) const {
    const std::string shown = v.is_list ? "a list" : "'" + v.scalar + "'";
    throw Error(source_ + ":" + std::to_string(v.line) + ": " + path + " is " + shown + ", expected " + expected);
  }

  YamlPaths paths_;
  std::string source_;
};

// LDM writes -1 for "not set" in num_heads / num_head_channels.
std::optional<int64_t> positive_or_unset(std::optional<int64_t> v) {
  if (v && *v <= 0) return std::nullopt;
  return v;
}

template <class T>
void take(std::optional<T>& into, const std::optional<T>& from) {
  if (from) into = from;
}

}  // namespace

void LdmConfig::overlay(const LdmConfig& o) {
  take(linear_start, o.linear_start);
  take(linear_end, o.linear_end);
  take(scale_factor, o.scale_factor);
  take(timesteps, o.timesteps);
  take(image_size, o.image_size);
  take(parameterization, o.parameterization);
  take(num_heads, o.num_heads);
  take(num_head_channels, o.num_head_channels);
  take(context_dim, o.context_dim);
  take(model_channels, o.model_channels);
  take(num_res_blocks, o.num_res_blocks);
  take(in_channels, o.in_channels);
  take(out_channels, o.out_channels);
  take(transformer_depth, o.transformer_depth);
  take(use_linear_in_transformer, o.use_linear_in_transformer);
  take(channel_mult, o.channel_mult);
  take(attention_resolutions, o.attention_resolutions);
  take(vae_ch, o.vae_ch);
  take(vae_num_res_blocks, o.vae_num_res_blocks);
  take(vae_z_channels, o.vae_z_channels);
  take(vae_ch_mult, o.vae_ch_mult);
  take(text_num_attention_heads, o.text_num_attention_heads);
  take(transformer_depths, o.transformer_depths);
  take(adm_in_channels, o.adm_in_channels);
  take(norm_num_groups, o.norm_num_groups);
}

LdmConfig parse_ldm_yaml(const std::string& text, const std::string& source) {
  const YamlReader y(text, source);
  // The UNet's settings: LDM's unet_config, or SGM's network_config when that is what the yaml has.
  bool sgm = false;
  for (const char* k : kUnetKeys) sgm = sgm || y.has(kNetwork + k);
  const std::string &m = kModel, &u = sgm ? kNetwork : kUnet, &d = kVae;
  LdmConfig c;
  c.linear_start = y.number(m + "linear_start");
  c.linear_end = y.number(m + "linear_end");
  c.scale_factor = y.number(m + "scale_factor");
  c.timesteps = y.integer(m + "timesteps");
  c.image_size = y.integer(m + "image_size");
  c.parameterization = y.string(m + "parameterization");
  c.num_heads = positive_or_unset(y.integer(u + "num_heads"));
  c.num_head_channels = positive_or_unset(y.integer(u + "num_head_channels"));
  c.context_dim = y.integer(u + "context_dim");
  c.model_channels = y.integer(u + "model_channels");
  c.num_res_blocks = y.integer(u + "num_res_blocks");
  c.in_channels = y.integer(u + "in_channels");
  c.out_channels = y.integer(u + "out_channels");
  if (y.is_list(u + "transformer_depth"))  // SGM: one depth per level
    c.transformer_depths = y.integers(u + "transformer_depth");
  else
    c.transformer_depth = y.integer(u + "transformer_depth");
  c.adm_in_channels = y.integer(u + "adm_in_channels");
  c.use_linear_in_transformer = y.boolean(u + "use_linear_in_transformer");
  c.channel_mult = y.integers(u + "channel_mult");
  c.attention_resolutions = y.integers(u + "attention_resolutions");
  c.vae_ch = y.integer(d + "ch");
  c.vae_num_res_blocks = y.integer(d + "num_res_blocks");
  c.vae_z_channels = y.integer(d + "z_channels");
  c.vae_ch_mult = y.integers(d + "ch_mult");
  return c;
}

LdmConfig read_ldm_yaml(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the LDM yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": cannot read the LDM yaml");
  return parse_ldm_yaml(ss.str(), path);
}

}  // namespace sdrt::pipeline
