// main() of the tests above the runtime (convert_*, cli_*, server_*): they open single-file checkpoints
// in-process, so the converter's importer is installed first, as sdrt's CLI does. The pipeline_* tests
// keep gtest's main and link the runtime alone; the capi_* tests do too, to show the C API installing it.
#include <gtest/gtest.h>

#include "sdrt/convert/checkpoint_importer.hpp"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  sdrt::convert::install_checkpoint_importer();
  return RUN_ALL_TESTS();
}
