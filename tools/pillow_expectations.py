#!/usr/bin/python3
"""Prints the expected values of tests/pipeline_image_processing_test.cpp (ResizePil.*) from Pillow.

Run with Debian 12's Pillow 9.4.0 and numpy (apt-get install python3-pil python3-numpy):
    /usr/bin/python3 tools/pillow_resize_expectations.py
The patterns are the test's own; the output is the hash table and float lists the test hard-codes.
"""
import numpy as np
from PIL import Image

FILTERS = [("Nearest", Image.NEAREST), ("Lanczos", Image.LANCZOS), ("Bilinear", Image.BILINEAR),
           ("Bicubic", Image.BICUBIC), ("Box", Image.BOX), ("Hamming", Image.HAMMING)]


def pattern(w, h, c):
    img = np.zeros((h, w, c), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                v = (x * 37 + y * 101 + ch * 53 + ((x * y) % 7) * 29) % 256
                if y % 3 == 0:
                    v = 255 if x % 2 else 0
                img[y, x, ch] = v
    return img


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def float_pattern(w, h):
    return np.array([[((x * 37 + y * 101) % 256) * 0.37 - 10.0 for x in range(w)] for y in range(h)],
                    dtype=np.float32)


def main():
    print(f"Pillow {Image.__version__}")
    for (w, h, nw, nh) in [(23, 17, 8, 6), (9, 7, 20, 15), (23, 17, 30, 9)]:
        for name, f in FILTERS:
            out = Image.fromarray(pattern(w, h, 3), "RGB").resize((nw, nh), resample=f)
            print(f"{{{w}, {h}, {nw}, {nh}, Resample::{name}, 0x{fnv1a(out.tobytes()):016x}ull}},")
    gray = Image.fromarray(pattern(23, 17, 1)[:, :, 0], "L").resize((8, 6), resample=Image.LANCZOS)
    print(f"gray 23x17 -> 8x6 Lanczos: 0x{fnv1a(gray.tobytes()):016x}ull")
    down = Image.fromarray(float_pattern(7, 5), "F").resize((3, 2), resample=Image.LANCZOS)
    print("float 7x5 -> 3x2 Lanczos:", [repr(float(v)) for v in np.asarray(down).ravel()])
    up = Image.fromarray(float_pattern(3, 2), "F").resize((5, 4), resample=Image.BICUBIC)
    print("float 3x2 -> 5x4 Bicubic:", [repr(float(v)) for v in np.asarray(up).ravel()])
    rgb = Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [10, 200, 77]]], dtype=np.uint8), "RGB")
    print("RGB -> L:", list(rgb.convert("L").tobytes()))
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 40, 50, 60])
    pal.putdata([0, 1])
    pal.info["transparency"] = bytes([255, 0])
    print("P with tRNS -> RGBA:", list(pal.convert("RGBA").tobytes()))
    print("L -> RGBA:", list(Image.fromarray(np.array([[9, 200]], dtype=np.uint8), "L").convert("RGBA").tobytes()))


if __name__ == "__main__":
    main()
