function(sdrt_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion)
  if(SDRT_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

# libFuzzer coverage plus ASan and UBSan (UB aborts, so the fuzzer sees it) for the SDRT_FUZZ build, with the
# flags libFuzzer's documentation recommends (-O1 comes from scripts/configure-sanitized.sh).
function(sdrt_fuzz_instrument target)
  target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                         -fsanitize-coverage-ignorelist=${PROJECT_SOURCE_DIR}/tests/fuzz/coverage_ignorelist.txt
                         -fno-omit-frame-pointer -gline-tables-only)
endfunction()

# A layer is src/<name>/*.cpp (recursively) with public headers in include/sdrt/<name>.
function(sdrt_layer name)
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  add_library(sdrt_${name} STATIC ${sources})
  add_library(sdrt::sdrt_${name} ALIAS sdrt_${name})
  target_include_directories(sdrt_${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  sdrt_warnings(sdrt_${name})
  if(SDRT_SANITIZE)
    target_link_options(sdrt_${name} INTERFACE -fsanitize=address,undefined)
  endif()
endfunction()
