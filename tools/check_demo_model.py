#!/usr/bin/python3
"""Samples the demo model (models/demo) for its held-out captions the way diffusers' StableDiffusionPipeline
would (PNDM, numpy latents, CFG) and applies the image-statistics rule of tests/pipeline_demo_model_test.cpp.

  /usr/bin/python3 tools/check_demo_model.py [--model models/demo] [--png-dir /tmp/demo-check] [--seeds 0 1 2]
"""
import argparse
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_model_lib as lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_model(folder):
    def config(sub):
        with open(os.path.join(folder, sub, "config.json")) as f:
            return json.load(f)

    def weights(module, sub, name):
        state = {k: v.float() for k, v in lib.read_safetensors(os.path.join(folder, sub, name)).items()}
        module.load_state_dict(state)
        return module.eval()
    vae_config = config("vae")
    unet = weights(lib.UNet2DConditionModel(config("unet")), "unet", "diffusion_pytorch_model.safetensors")
    vae = weights(lib.AutoencoderKL(vae_config), "vae", "diffusion_pytorch_model.safetensors")
    text = weights(lib.ClipTextModel(config("text_encoder")), "text_encoder", "model.safetensors")
    return unet, vae, text, lib.ClipTokenizer(os.path.join(folder, "tokenizer")), vae_config["scaling_factor"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(REPO, "models", "demo"))
    p.add_argument("--png-dir", default="/tmp/demo-check")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=2.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    unet, vae, text, tokenizer, scaling = load_model(args.model)
    os.makedirs(args.png_dir, exist_ok=True)
    passed = total = 0
    for shape, colour, background, size, position in lib.TEST_CASES:
        caption = lib.caption(shape, colour, background, size, position)
        for seed in args.seeds:
            image = lib.sample_pndm(unet, vae, text, tokenizer, caption, seed, scaling, args.steps, args.guidance)
            png = os.path.join(args.png_dir, f"{caption.replace(' ', '_')}_seed{seed}.png")
            Image.fromarray(image).resize((256, 256), Image.NEAREST).save(png)
            stats = lib.image_statistics(image)
            ok = lib.statistics_match(stats, colour, background, position)
            passed += ok
            total += 1
            print(f"{'PASS' if ok else 'FAIL'} seed {seed} '{caption}': {json.dumps(stats)}")
    print(f"{passed}/{total} images match their caption; PNGs (4x nearest upscale) in {args.png_dir}")


if __name__ == "__main__":
    main()
