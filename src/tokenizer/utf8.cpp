#include "tokenizer/utf8.hpp"

#include <cstdint>

#include "sdrt/base/error.hpp"

namespace sdrt::tokenizer {
namespace {

[[noreturn]] void fail(size_t offset, const char* problem) {
  throw Error("invalid UTF-8 in text at byte offset " + std::to_string(offset) + ": " + problem);
}

bool is_continuation(uint8_t byte) { return (byte & 0xC0) == 0x80; }

// What a lead byte announces: total length (0 when it cannot start a sequence), its payload bits and the
// smallest code point that needs this length (anything smaller is an overlong form).
struct Sequence {
  size_t length;
  char32_t payload;
  char32_t min_value;
};

Sequence sequence_of(uint8_t lead) {
  if ((lead & 0xE0) == 0xC0) return {2, lead & 0x1Fu, 0x80};
  if ((lead & 0xF0) == 0xE0) return {3, lead & 0x0Fu, 0x800};
  if ((lead & 0xF8) == 0xF0) return {4, lead & 0x07u, 0x10000};
  return {0, 0, 0};
}

}  // namespace

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<uint8_t>(text[i]);
    if (lead < 0x80) {
      out.push_back(lead);
      ++i;
      continue;
    }
    const Sequence seq = sequence_of(lead);
    if (seq.length == 0)
      fail(i, is_continuation(lead) ? "continuation byte without a lead byte" : "byte 0xF8-0xFF is never UTF-8");
    char32_t cp = seq.payload;
    for (size_t k = 1; k < seq.length; ++k) {
      if (i + k >= text.size() || !is_continuation(static_cast<uint8_t>(text[i + k])))
        fail(i, "truncated multi-byte sequence");
      cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3Fu);
    }
    if (cp < seq.min_value) fail(i, "overlong encoding");
    if (cp >= 0xD800 && cp <= 0xDFFF) fail(i, "encoded UTF-16 surrogate");
    if (cp > 0x10FFFF) fail(i, "code point above U+10FFFF");
    out.push_back(cp);
    i += seq.length;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

}  // namespace sdrt::tokenizer
