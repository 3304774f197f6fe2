// UTF-8 helpers shared by the io sources (internal).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdrt::io::utf8 {

// The code points of `s`, or nullopt when it is not valid UTF-8 (overlong forms, surrogates and
// values above U+10FFFF are invalid).
inline std::optional<std::vector<char32_t>> decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<uint8_t>(s[i]);
    int extra = 0;
    char32_t cp = 0, min = 0;
    if (b0 < 0x80) {
      cp = b0;
    } else if ((b0 & 0xe0) == 0xc0) {
      extra = 1, cp = b0 & 0x1fu, min = 0x80;
    } else if ((b0 & 0xf0) == 0xe0) {
      extra = 2, cp = b0 & 0x0fu, min = 0x800;
    } else if ((b0 & 0xf8) == 0xf0) {
      extra = 3, cp = b0 & 0x07u, min = 0x10000;
    } else {
      return std::nullopt;
    }
    if (s.size() - i <= static_cast<size_t>(extra)) return std::nullopt;
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
      if ((b & 0xc0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (b & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return std::nullopt;
    out.push_back(cp);
    i += 1 + static_cast<size_t>(extra);
  }
  return out;
}

inline bool valid(std::string_view s) { return decode(s).has_value(); }

inline void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// Latin-1 bytes (as in PNG tEXt chunks) to UTF-8.
inline std::string from_latin1(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) append(out, static_cast<uint8_t>(c));
  return out;
}

// UTF-8 to Latin-1, or nullopt when `s` is not valid UTF-8 or holds a code point above U+00FF.
inline std::optional<std::string> to_latin1(std::string_view s) {
  const auto cps = decode(s);
  if (!cps) return std::nullopt;
  std::string out;
  out.reserve(cps->size());
  for (char32_t cp : *cps) {
    if (cp > 0xff) return std::nullopt;
    out += static_cast<char>(cp);
  }
  return out;
}

}  // namespace sdrt::io::utf8
