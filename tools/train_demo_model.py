#!/usr/bin/python3
"""Trains the tiny text-to-image demo model (models/demo) on generated shape images, CPU only.

Run with Debian's PyTorch (apt-get install -y python3-torch python3-numpy python3-pil; libopenblas0-pthread makes
its matrix products ~2x faster than the default reference BLAS):
  /usr/bin/python3 tools/train_demo_model.py --work /tmp/demo-train --out models/demo
Stages (each resumes from its checkpoint in --work): vae, unet (text encoder trained jointly), export.
All randomness comes from fixed seeds; results are reproducible for the same thread count and torch build.
"""
import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_model_lib as lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(REPO, "..", "shared", "reference", "models", "sd1-tiny")

VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.27.2", "act_fn": "silu",
    "block_out_channels": [8, 16, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "force_upcast": True, "in_channels": 3, "latent_channels": 4, "latents_mean": None, "latents_std": None,
    "layers_per_block": 1, "norm_num_groups": 4, "out_channels": 3, "sample_size": 64,
    "scaling_factor": None,  # measured after VAE training
}
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.27.2", "act_fn": "silu",
    "addition_embed_type": None, "addition_embed_type_num_heads": 64, "addition_time_embed_dim": None,
    "attention_head_dim": 4, "attention_type": "default", "block_out_channels": [32, 64],
    "center_input_sample": False, "class_embed_type": None, "class_embeddings_concat": False,
    "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 32, "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dropout": 0.0, "dual_cross_attention": False, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
    "layers_per_block": 1, "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 8,
    "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "projection_class_embeddings_input_dim": None, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default", "reverse_transformer_layers_per_block": None, "sample_size": 8,
    "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": 1,
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": False,
    "use_linear_projection": False,
}
TEXT_CONFIG = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 2,
    "hidden_act": "quick_gelu", "hidden_size": 32, "initializer_factor": 1.0, "initializer_range": 0.02,
    "intermediate_size": 64, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 1,
    "projection_dim": 32, "torch_dtype": "float32", "transformers_version": "4.40.0.dev0", "vocab_size": 49408,
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_pool(count, seed):
    rng = np.random.default_rng(seed)
    combos = lib.training_combinations()
    images, captions = [], []
    for _ in range(count):
        img, cap = lib.random_example(rng, combos)
        images.append(img)
        captions.append(cap)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), captions


def to_model_range(images_uint8):
    return images_uint8.float() / 127.5 - 1.0


def save_checkpoint(path, **state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_vae(args, pool):
    path = os.path.join(args.work, "vae.pt")
    torch.manual_seed(1)
    vae = lib.AutoencoderKL(VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    step = 0
    if os.path.exists(path):
        ck = torch.load(path)
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    gen = torch.Generator().manual_seed(2 + step)
    t0, first = time.time(), step
    while step < args.vae_steps:
        idx = torch.randint(len(pool), (args.vae_batch,), generator=gen)
        x = to_model_range(pool[idx])
        for group in opt.param_groups:  # lower rate for the last quarter
            group["lr"] = args.vae_lr * (0.3 if step >= 0.75 * args.vae_steps else 1.0)
        mean, logvar = vae.encode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=gen)
        rec = vae.decode(z)
        mse = F.mse_loss(rec, x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = mse + args.kl_weight * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            rate = (step - first) / (time.time() - t0)
            log(f"vae step {step}/{args.vae_steps} mse {mse.item():.5f} kl {kl.item():.3f} ({rate:.2f} it/s)")
        if step % 200 == 0 or step == args.vae_steps:
            save_checkpoint(path, model=vae.state_dict(), opt=opt.state_dict(), step=step)
    return vae


@torch.no_grad()
def encode_pool(vae, pool):
    means = [vae.encode(to_model_range(pool[i:i + 256]))[0] for i in range(0, len(pool), 256)]
    return torch.cat(means)


def train_unet(args, latents, captions, tokenizer):
    path = os.path.join(args.work, "unet.pt")
    torch.manual_seed(3)
    unet = lib.UNet2DConditionModel(UNET_CONFIG)
    text = lib.ClipTextModel(TEXT_CONFIG)
    with torch.no_grad():  # CLIP-like init scale
        text.text_model.embeddings.token_embedding.weight.normal_(0, 0.02)
        text.text_model.embeddings.position_embedding.weight.normal_(0, 0.01)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.0)
    step = 0
    if os.path.exists(path):
        ck = torch.load(path)
        unet.load_state_dict(ck["unet"])
        text.load_state_dict(ck["text"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
    ids = torch.tensor([tokenizer(c) for c in captions])
    empty = torch.tensor(tokenizer(""))
    acp = lib.alphas_cumprod()
    gen = torch.Generator().manual_seed(4 + step)
    t0, first = time.time(), step
    deadline = t0 + args.unet_minutes * 60
    while step < args.unet_steps and time.time() < deadline:
        idx = torch.randint(len(latents), (args.unet_batch,), generator=gen)
        x0 = latents[idx]
        tok = ids[idx].clone()
        drop = torch.rand(args.unet_batch, generator=gen) < 0.1  # empty captions for classifier-free guidance
        tok[drop] = empty
        t = torch.randint(0, 1000, (args.unet_batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        lr = args.unet_lr * min(1.0, (step + 1) / 200)
        for group in opt.param_groups:
            group["lr"] = lr
        ctx, _ = text(tok)
        loss = F.mse_loss(unet(xt, t, ctx), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            rate = (step - first) / (time.time() - t0)
            log(f"unet step {step}/{args.unet_steps} loss {loss.item():.4f} ({rate:.2f} it/s)")
        if step % 250 == 0:
            save_checkpoint(path, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), step=step)
    save_checkpoint(path, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), step=step)
    log(f"unet stopped at step {step}")
    return unet, text


def export(args, vae, unet, text, scaling_factor, tokenizer, captions):
    out = args.out
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)

    def dump(obj, *parts):
        with open(os.path.join(out, *parts), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    index = json.load(open(os.path.join(REFERENCE, "model_index.json")))
    index.update({"feature_extractor": [None, None], "safety_checker": [None, None],
                  "requires_safety_checker": False})
    dump(index, "model_index.json")
    dump(UNET_CONFIG, "unet", "config.json")
    dump(dict(VAE_CONFIG, scaling_factor=scaling_factor), "vae", "config.json")
    dump(TEXT_CONFIG, "text_encoder", "config.json")
    shutil.copyfile(os.path.join(REFERENCE, "scheduler", "scheduler_config.json"),
                    os.path.join(out, "scheduler", "scheduler_config.json"))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(REFERENCE, "tokenizer", name), os.path.join(out, "tokenizer", name))

    text_sd = dict(text.state_dict())
    # Rows of tokens that never occur in a caption were never trained: zero them (compresses well).
    used = torch.zeros(TEXT_CONFIG["vocab_size"], dtype=torch.bool)
    for c in set(captions) | {""}:
        used[torch.tensor(tokenizer(c))] = True
    emb = text_sd["text_model.embeddings.token_embedding.weight"].clone()
    emb[~used] = 0
    text_sd["text_model.embeddings.token_embedding.weight"] = emb
    dtype = torch.float32 if args.fp32 else torch.float16
    for sd, parts in ((unet.state_dict(), ("unet", "diffusion_pytorch_model.safetensors")),
                      (vae.state_dict(), ("vae", "diffusion_pytorch_model.safetensors")),
                      (text_sd, ("text_encoder", "model.safetensors"))):
        lib.write_safetensors(os.path.join(out, *parts), {k: v.to(dtype) for k, v in sd.items()})
    log(f"exported to {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/demo-train", help="checkpoints and logs")
    p.add_argument("--out", default=os.path.join(REPO, "models", "demo"))
    p.add_argument("--pool", type=int, default=12000, help="generated training images")
    p.add_argument("--vae-steps", type=int, default=2500)
    p.add_argument("--vae-batch", type=int, default=12)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6, help="on the mean KL per latent element")
    p.add_argument("--unet-steps", type=int, default=100000)
    p.add_argument("--unet-minutes", type=float, default=20.0, help="wall-clock budget of the UNet stage")
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--fp32", action="store_true", help="store float32 weights (default float16: half the size)")
    p.add_argument("--stage", choices=("vae", "unet", "all"), default="all")
    p.add_argument("--threads", type=int, default=1, help="1 is fastest on a heavily shared machine")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)

    start = time.time()
    tokenizer = lib.ClipTokenizer(os.path.join(REFERENCE, "tokenizer"))
    pool, captions = make_pool(args.pool, seed=0)
    log(f"pool of {len(pool)} images generated")
    vae = train_vae(args, pool)
    log(f"vae done at {time.time() - start:.0f}s")
    if args.stage == "vae":
        return
    vae.eval()
    latents = encode_pool(vae, pool)
    scaling_factor = round(float(1.0 / latents.std()), 5)
    log(f"latent std {latents.std().item():.4f} -> scaling_factor {scaling_factor:.5f}")
    unet, text = train_unet(args, latents * scaling_factor, captions, tokenizer)
    log(f"unet done at {time.time() - start:.0f}s")
    export(args, vae, unet, text, scaling_factor, tokenizer, captions)
    log(f"total {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
