#!/usr/bin/env python3
"""Lays out an sdrt bundle's weights as a diffusers folder, so another engine runs the very same bytes
(stable-diffusion.cpp loads it with `-m DIR`; see docs/performance.md):

  DIR/unet/diffusion_pytorch_model.safetensors   -> symlink to Unet.safetensors
  DIR/text_encoder/model.safetensors             -> symlink to TextEncoder.safetensors
  DIR/vae/diffusion_pytorch_model.safetensors    =  VAEDecoder + VAEEncoder merged
                                                    (tensor bytes copied verbatim, dtype kept)

SDXL bundles (TextEncoder2.safetensors) get two more files, because this stable-diffusion.cpp snapshot
loads a diffusers text_encoder_2 under the prefix "te.1.", which its name map turns into
cond_stage_model.transformer.1.* (not the cond_stage_model.1.* its SDXL conditioner reads), and then
detects SD 1.x.  Instead (run `sd-cli -m OUT_DIR/sdcpp_sdxl.json`):

  DIR/sdcpp_clip_g.safetensors  =  TextEncoder2 with names prefixed "cond_stage_model.1.transformer."
                                   (tensor bytes copied verbatim, dtype kept)
  DIR/sdcpp_sdxl.json           =  a safetensors index whose shards are DIR itself (loaded as the
                                   diffusers folder) and sdcpp_clip_g.safetensors
  DIR/text_encoder_2/model.safetensors = a file with no tensors (else the folder loader logs an ERROR)

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


def merge_safetensors(inputs, out_path, prefix=""):
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
            entries.append((prefix + name, info["dtype"], info["shape"], p, base + s, e - s))
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


def tensor_names(path):
    hdr, _ = read_header(path)
    hdr.pop("__metadata__", None)
    return sorted(hdr)


def write_sdxl_index(out, te2):
    clip_g = os.path.join(out, "sdcpp_clip_g.safetensors")
    n, nbytes = merge_safetensors([te2], clip_g, prefix="cond_stage_model.1.transformer.")
    print(f"text_encoder_2: {n} tensors, {nbytes} data bytes -> {clip_g}")
    # every tensor names its shard, as in a diffusers index; sd.cpp only reads the shard paths
    weight_map = {}
    for sub, stem in (("unet", "diffusion_pytorch_model"), ("text_encoder", "model"), ("vae", "diffusion_pytorch_model")):
        prefix = {"unet": "unet.", "text_encoder": "te.", "vae": "vae."}[sub]
        for name in tensor_names(os.path.join(out, sub, stem + ".safetensors")):
            weight_map[prefix + name] = "."
    for name in tensor_names(clip_g):
        weight_map[name] = "sdcpp_clip_g.safetensors"
    os.makedirs(os.path.join(out, "text_encoder_2"), exist_ok=True)
    merge_safetensors([], os.path.join(out, "text_encoder_2", "model.safetensors"))
    with open(os.path.join(out, "sdcpp_sdxl.json"), "w") as f:
        json.dump({"metadata": {"note": "sdrt bundle laid out for stable-diffusion.cpp"}, "weight_map": weight_map},
                  f, indent=1)
    print(f"sdcpp_sdxl.json: {len(weight_map)} tensors")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    bundle, out = (os.path.abspath(a) for a in sys.argv[1:])
    # no text_encoder_2 folder for SDXL: sd.cpp would load it under names it cannot use (see above)
    for sub in ("unet", "text_encoder", "vae"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    links = {
        "unet/diffusion_pytorch_model.safetensors": "Unet.safetensors",
        "text_encoder/model.safetensors": "TextEncoder.safetensors",
    }
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
    te2 = os.path.join(bundle, "TextEncoder2.safetensors")
    if os.path.exists(te2):
        write_sdxl_index(out, te2)
    # stable-diffusion.cpp has its CLIP vocabulary built in; the files are copied for other readers
    for f in ("vocab.json", "merges.txt", "manifest.json"):
        shutil.copyfile(os.path.join(bundle, f), os.path.join(out, f))
    print("wrote", out)


if __name__ == "__main__":
    main()
