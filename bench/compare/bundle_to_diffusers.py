#!/usr/bin/env python3
"""Lays out an sdrt bundle's weights as a diffusers folder, so another engine runs the very same bytes
(stable-diffusion.cpp loads it with `-m DIR`; see docs/performance.md):

  DIR/unet/diffusion_pytorch_model.safetensors   -> symlink to Unet.safetensors
  DIR/text_encoder/model.safetensors             -> symlink to TextEncoder.safetensors
  DIR/text_encoder_2/model.safetensors           -> symlink to TextEncoder2.safetensors (SDXL only)
  DIR/vae/diffusion_pytorch_model.safetensors    =  VAEDecoder + VAEEncoder merged
                                                    (tensor bytes copied verbatim, dtype kept)

Python standard library only.  Usage: bundle_to_diffusers.py BUNDLE_DIR OUT_DIR
"""
import json
import os
import shutil
import struct
import sys


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    return hdr, 8 + n


def merge_safetensors(inputs, out_path):
    entries = []  # (name, dtype, shape, src_path, abs_start, nbytes)
    seen = set()
    for p in inputs:
        hdr, base = read_header(p)
        hdr.pop("__metadata__", None)
        for name, info in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if name in seen:
                raise SystemExit(f"duplicate tensor {name}")
            seen.add(name)
            s, e = info["data_offsets"]
            entries.append((name, info["dtype"], info["shape"], p, base + s, e - s))
    out_hdr = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dtype, shape, _, _, nbytes in entries:
        out_hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    hbytes = json.dumps(out_hdr, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(hbytes)))
        out.write(hbytes)
        for _, _, _, src, start, nbytes in entries:
            with open(src, "rb") as f:
                f.seek(start)
                remaining = nbytes
                while remaining:
                    chunk = f.read(min(remaining, 1 << 24))
                    if not chunk:
                        raise SystemExit(f"short read in {src}")
                    out.write(chunk)
                    remaining -= len(chunk)
    os.replace(tmp, out_path)
    return len(entries), off


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    bundle, out = (os.path.abspath(a) for a in sys.argv[1:])
    links = {
        "unet/diffusion_pytorch_model.safetensors": "Unet.safetensors",
        "text_encoder/model.safetensors": "TextEncoder.safetensors",
    }
    # SDXL: the second encoder (OpenCLIP bigG with projection) under diffusers' name
    if os.path.exists(os.path.join(bundle, "TextEncoder2.safetensors")):
        links["text_encoder_2/model.safetensors"] = "TextEncoder2.safetensors"
    for sub in {os.path.dirname(d) for d in links} | {"vae"}:
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for dst, src in links.items():
        d = os.path.join(out, dst)
        if os.path.lexists(d):
            os.remove(d)
        os.symlink(os.path.join(bundle, src), d)
    n, nbytes = merge_safetensors(
        [os.path.join(bundle, "VAEDecoder.safetensors"), os.path.join(bundle, "VAEEncoder.safetensors")],
        os.path.join(out, "vae/diffusion_pytorch_model.safetensors"),
    )
    print(f"vae: merged {n} tensors, {nbytes} data bytes")
    # stable-diffusion.cpp has its CLIP vocabulary built in; the files are copied for other readers
    for f in ("vocab.json", "merges.txt", "manifest.json"):
        shutil.copyfile(os.path.join(bundle, f), os.path.join(out, f))
    print("wrote", out)


if __name__ == "__main__":
    main()
