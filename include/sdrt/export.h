/* SDRT_API marks what libsdrt.so exports; everything else is built with hidden visibility, so the
 * shared library's surface is exactly the C API (sdrt.h) and the C++ pipeline API (sdrt/pipeline). */
#ifndef SDRT_EXPORT_H
#define SDRT_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define SDRT_API __attribute__((visibility("default")))
#else
#define SDRT_API
#endif

#endif /* SDRT_EXPORT_H */
