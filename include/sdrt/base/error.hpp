// Errors shared by every layer. Messages name the file, tensor or argument at fault.
#pragma once
#include <stdexcept>
#include <string>

#include "sdrt/export.h"

namespace sdrt {

class SDRT_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Raised when a caller cancels a long operation through a progress callback.
class SDRT_API Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace sdrt
