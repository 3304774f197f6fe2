// Crafted inputs for the harnesses: small parameters in, files that describe large work out (many views of
// one storage, shared pickle memo objects, deep nesting, long keys, huge declared dimensions). Mutation of
// real files never reaches these shapes (see ../shared/hostile/README.md); the harnesses feed both.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "support/torch_writer.hpp"

namespace sdrt::fuzz {

// The zip and pickle writers live in tests/support (the tests write .bin checkpoints with them too).
using test::crc32;
using test::PickleWriter;
using test::torch_zip;
using test::zip_stored;

// Torch checkpoint generators; every parameter comes from `p`.
std::string gen_torch_views(Params& p);         // many (transposed) views of one storage
std::string gen_torch_shared_dicts(Params& p);  // dicts holding the next one twice through the memo
std::string gen_torch_deep(Params& p);          // dicts nested deep, long keys, many entries

// A safetensors file whose header declares huge dims / many tensors / long or duplicate keys.
std::string gen_safetensors(Params& p);

// PNG and JPEG with declared sizes from `p` (up to 2^32-1 / 65535), little or no pixel data, and an
// optional EXIF payload (the rest of the input).
std::string gen_png(Params& p);
std::string gen_jpeg(Params& p);

// Text generators: deeply nested JSON, long keys and numbers; LDM yaml with deep indentation, long keys and
// unclosed flow lists; prompts made of one long word or many repeated pieces.
std::string gen_json(Params& p);
std::string gen_ldm_yaml(Params& p);
std::string gen_prompt(Params& p);

// A bundle manifest whose file names come from a list of hostile choices (../, absolute, long, NUL, ...).
std::string gen_manifest(Params& p);

}  // namespace sdrt::fuzz
