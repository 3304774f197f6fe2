"""Small PyTorch re-implementations of the Stable Diffusion 1.x networks, with the exact state_dict names and
semantics of diffusers 0.27.2 (UNet2DConditionModel, AutoencoderKL) and transformers (CLIPTextModel), plus a
CLIP BPE tokenizer for ASCII captions, a safetensors reader/writer, the shape data set and a DDIM sampler.

Used by tools/train_demo_model.py and tools/check_demo_model.py (run with Debian's /usr/bin/python3 and
python3-torch; no diffusers or transformers needed).
"""
import json
import math
import re
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------------------------
# safetensors


_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32"}
_ST_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "F64": np.float64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=_ST_NP[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def write_safetensors(path, tensors):
    """Header JSON (dtype/shape/data_offsets, padded with spaces to 8 bytes) then raw little-endian data."""
    header = {"__metadata__": {"format": "pt"}}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)


# ----------------------------------------------------------------------------------------------------------
# CLIP BPE tokenizer (ASCII captions only)


def _bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


class ClipTokenizer:
    BOS, EOS = 49406, 49407
    # The CLIP regex restricted to ASCII: letters, single digits, runs of other non-space characters.
    _PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

    def __init__(self, folder):
        with open(f"{folder}/vocab.json", encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(f"{folder}/merges.txt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1:]
        merges = [tuple(line.split()) for line in lines if line.strip()]
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()

    def _bpe(self, token):
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text):
        if not text.isascii():
            raise ValueError(f"ASCII captions only: {text!r}")
        # BasicTokenizer: drop control characters, whitespace runs -> one space, lower case.
        text = "".join(ch for ch in text if ch.isspace() or (ch.isprintable() and ch != "\x7f"))
        text = " ".join(text.lower().split())
        ids = []
        for piece in self._PATTERN.findall(text):
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.vocab[piece])
                continue
            token = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self._bpe(token))
        return ids

    def __call__(self, text, length=77):
        ids = [self.BOS] + self.encode(text)[:length - 2] + [self.EOS]
        return ids + [self.EOS] * (length - len(ids))


# ----------------------------------------------------------------------------------------------------------
# CLIPTextModel


class ClipAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, mask):
        b, n, d = x.shape
        hd = d // self.heads

        def split(t):
            return t.view(b, n, self.heads, hd).transpose(1, 2)
        q = split(self.q_proj(x) * hd ** -0.5)
        k, v = split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class ClipMlp(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, inner), nn.Linear(inner, dim)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class ClipLayer(nn.Module):
    def __init__(self, dim, heads, inner, eps):
        super().__init__()
        self.self_attn = ClipAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = ClipMlp(dim, inner)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(
            ClipLayer(cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["layer_norm_eps"])
            for _ in range(cfg["num_hidden_layers"]))


class ClipEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embedding = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])


class ClipTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = ClipEmbeddings(cfg)
        self.encoder = ClipEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])


class ClipTextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.text_model = ClipTextTransformer(cfg)

    def forward(self, ids):
        """Returns (last_hidden_state, hidden_states list incl. embeddings)."""
        tm = self.text_model
        n = ids.shape[1]
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding(torch.arange(n))[None]
        mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)
        hidden = [x]
        for layer in tm.encoder.layers:
            x = layer(x, mask)
            hidden.append(x)
        return tm.final_layer_norm(x), hidden


# ----------------------------------------------------------------------------------------------------------
# Shared diffusers building blocks


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, groups, eps, temb_channels=None):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb_channels is not None:
            self.time_emb_proj = nn.Linear(temb_channels, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:  # AutoencoderKL: asymmetric pad right/bottom
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def attention(q, k, v, heads):
    b, n, inner = q.shape
    hd = inner // heads

    def split(t):
        return t.view(b, -1, heads, hd).transpose(1, 2)
    w = torch.softmax((split(q) @ split(k).transpose(-1, -2)) * hd ** -0.5, dim=-1)
    return (w @ split(v)).transpose(1, 2).reshape(b, n, inner)


class Attention(nn.Module):
    """diffusers Attention as used by BasicTransformerBlock (no q/k/v bias) and by the VAE mid block
    (q/k/v bias, group_norm, residual)."""

    def __init__(self, query_dim, heads, dim_head, cross_dim=None, bias=False, groups=None, eps=1e-6):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        if groups is not None:
            self.group_norm = nn.GroupNorm(groups, query_dim, eps=eps)
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(cross_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(cross_dim or query_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out[0](out)


class VaeMidAttention(Attention):
    def __init__(self, channels, groups, eps):
        super().__init__(channels, 1, channels, bias=True, groups=groups, eps=eps)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        t = super().forward(t)
        return x + t.transpose(1, 2).reshape(b, c, h, w)


# ----------------------------------------------------------------------------------------------------------
# AutoencoderKL


class UNetMidBlock2D(nn.Module):
    def __init__(self, channels, groups, eps, temb_channels=None):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups, eps, temb_channels),
                                      ResnetBlock2D(channels, channels, groups, eps, temb_channels)])
        self.attentions = nn.ModuleList([VaeMidAttention(channels, groups, eps)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class DownEncoderBlock2D(nn.Module):
    def __init__(self, cin, cout, layers, groups, add_down):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if i == 0 else cout, cout, groups, 1e-6) for i in range(layers))
        if add_down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, padding=0)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, cin, cout, layers, groups, add_up):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if i == 0 else cout, cout, groups, 1e-6) for i in range(layers))
        if add_up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class VaeEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["layers_per_block"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownEncoderBlock2D(ch[max(i - 1, 0)], ch[i], n, g, i != len(ch) - 1) for i in range(len(ch)))
        self.mid_block = UNetMidBlock2D(ch[-1], g, 1e-6)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VaeDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, n = list(reversed(cfg["block_out_channels"])), cfg["norm_num_groups"], cfg["layers_per_block"]
        self.conv_in = nn.Conv2d(cfg["latent_channels"], ch[0], 3, padding=1)
        self.mid_block = UNetMidBlock2D(ch[0], g, 1e-6)
        self.up_blocks = nn.ModuleList(
            UpDecoderBlock2D(ch[max(i - 1, 0)], ch[i], n + 1, g, i != len(ch) - 1) for i in range(len(ch)))
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        lc = cfg["latent_channels"]
        self.encoder = VaeEncoder(cfg)
        self.decoder = VaeDecoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, x):
        """Returns (mean, logvar clamped to [-30, 20])."""
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ----------------------------------------------------------------------------------------------------------
# UNet2DConditionModel


def timestep_embedding(t, dim):
    """get_timestep_embedding with flip_sin_to_cos=True, downscale_freq_shift=0."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / half
    emb = t.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(cin, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, cross_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, cross_dim=cross_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, channels, heads, cross_dim, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, heads, channels // heads, cross_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.transformer_blocks:
            t = blk(t, context)
        t = t.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return self.proj_out(t) + x


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (with_attention) or DownBlock2D."""

    def __init__(self, cin, cout, temb, layers, groups, eps, add_down, heads=None, cross_dim=None):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if i == 0 else cout, cout, groups, eps, temb)
                                     for i in range(layers))
        if heads is not None:
            self.attentions = nn.ModuleList(Transformer2DModel(cout, heads, cross_dim, groups) for _ in range(layers))
        if add_down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, padding=1)])

    def forward(self, x, temb, context):
        skips = []
        for i, r in enumerate(self.resnets):
            x = r(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, context)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D (with heads) or UpBlock2D."""

    def __init__(self, cin, prev, cout, temb, layers, groups, eps, add_up, heads=None, cross_dim=None):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D((prev if i == 0 else cout) + (cin if i == layers - 1 else cout), cout, groups, eps, temb)
            for i in range(layers))
        if heads is not None:
            self.attentions = nn.ModuleList(Transformer2DModel(cout, heads, cross_dim, groups) for _ in range(layers))
        if add_up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])

    def forward(self, x, skips, temb, context):
        for i, r in enumerate(self.resnets):
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, context)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock2DCrossAttn(nn.Module):
    def __init__(self, channels, temb, groups, eps, heads, cross_dim):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups, eps, temb),
                                      ResnetBlock2D(channels, channels, groups, eps, temb)])
        self.attentions = nn.ModuleList([Transformer2DModel(channels, heads, cross_dim, groups)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, eps, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["norm_eps"], cfg["layers_per_block"]
        heads = cfg["attention_head_dim"]  # SD1 semantics: the config's attention_head_dim is the head count
        heads = heads if isinstance(heads, list) else [heads] * len(ch)
        cross = cfg["cross_attention_dim"]
        temb = ch[0] * 4
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["down_block_types"]):
            attn = kind == "CrossAttnDownBlock2D"
            self.down_blocks.append(DownBlock(ch[max(i - 1, 0)], ch[i], temb, n, g, eps, i != len(ch) - 1,
                                              heads[i] if attn else None, cross))
        self.mid_block = UNetMidBlock2DCrossAttn(ch[-1], temb, g, eps, heads[-1], cross)
        rch, rheads = list(reversed(ch)), list(reversed(heads))
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["up_block_types"]):
            attn = kind == "CrossAttnUpBlock2D"
            self.up_blocks.append(UpBlock(rch[min(i + 1, len(ch) - 1)], rch[max(i - 1, 0)], rch[i], temb, n + 1, g,
                                          eps, i != len(ch) - 1, rheads[i] if attn else None, cross))
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)
        self.base_channels = ch[0]

    def forward(self, x, t, context):
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        temb = self.time_embedding(timestep_embedding(t, self.base_channels))
        x = self.conv_in(x)
        skips = [x]
        for b in self.down_blocks:
            x, s = b(x, temb, context)
            skips += s
        x = self.mid_block(x, temb, context)
        for b in self.up_blocks:
            n = len(b.resnets)
            x = b(x, skips[-n:], temb, context)
            del skips[-n:]
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ----------------------------------------------------------------------------------------------------------
# Schedulers (SD1 scaled_linear betas) and sampling


def alphas_cumprod(num_train=1000, beta_start=0.00085, beta_end=0.012):
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@torch.no_grad()
def sample_ddim(unet, vae, text_encoder, tokenizer, captions, seed, scaling_factor, steps=25, guidance=7.5,
                latent_shape=(4, 16, 16)):
    """DDIM (eta 0, 'leading' spacing, steps_offset 1, set_alpha_to_one False) with CFG; returns uint8 NHWC."""
    acp = alphas_cumprod()
    ids = torch.tensor([tokenizer(c) for c in captions] + [tokenizer("")] * len(captions))
    ctx, _ = text_encoder(ids)
    b = len(captions)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((b,) + tuple(latent_shape), generator=g)
    ratio = 1000 // steps
    timesteps = [i * ratio + 1 for i in reversed(range(steps))]
    for t in timesteps:
        eps = unet(torch.cat([x, x]), torch.tensor([float(t)] * (2 * b)), torch.cat([ctx[:b], ctx[b:]]))
        cond, uncond = eps[:b], eps[b:]
        eps = uncond + guidance * (cond - uncond)
        prev = t - ratio
        a_t = acp[t]
        a_prev = acp[prev] if prev >= 0 else acp[0]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    img = vae.decode(x / scaling_factor)
    img = (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return np.round(img * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Data: one flat-coloured shape on a flat background


COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220),
           "yellow": (240, 220, 30), "white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")
POSITIONS = {"top left": (0.27, 0.27), "top right": (0.73, 0.27), "bottom left": (0.27, 0.73),
             "bottom right": (0.73, 0.73), "center": (0.5, 0.5)}
SIZES = {"small": 0.22, "large": 0.42}  # shape extent as a fraction of the image side
# (shape, colour, background) never shown in training; the tests generate these.
HELD_OUT = (("circle", "yellow", "blue"), ("square", "red", "white"), ("triangle", "green", "black"),
            ("circle", "white", "red"), ("square", "blue", "yellow"))


def caption(shape, colour, background, size=None, position=None):
    words = ["a"]
    if size:
        words.append(size)
    words += [colour, shape]
    if position:
        words.append("in the center" if position == "center" else f"at the {position}")
    words += ["on a", background, "background"]
    return " ".join(words)


def draw(shape, colour, background, size=None, position=None, rng=None, side=64):
    """Renders at 4x and downsamples (antialiased edges). Unnamed size/position are drawn at random."""
    from PIL import Image, ImageDraw
    rng = rng or np.random.default_rng(0)
    extent = SIZES[size] if size else rng.uniform(0.24, 0.4)
    if position:
        cx, cy = POSITIONS[position]
        cx, cy = cx + rng.uniform(-0.03, 0.03), cy + rng.uniform(-0.03, 0.03)
    else:
        cx, cy = rng.uniform(0.35, 0.65, size=2)
    s = side * 4
    img = Image.new("RGB", (s, s), COLOURS[background])
    d = ImageDraw.Draw(img)
    r = extent * s / 2
    x, y = cx * s, cy * s
    if shape == "circle":
        d.ellipse([x - r, y - r, x + r, y + r], fill=COLOURS[colour])
    elif shape == "square":
        r *= 0.9
        d.rectangle([x - r, y - r, x + r, y + r], fill=COLOURS[colour])
    else:
        d.polygon([(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)], fill=COLOURS[colour])
    return np.asarray(img.resize((side, side), Image.LANCZOS))


def training_combinations():
    return [(s, c, b) for s in SHAPES for c in COLOURS for b in COLOURS if c != b and (s, c, b) not in HELD_OUT]


def random_example(rng, combos):
    shape, colour, background = combos[rng.integers(len(combos))]
    size = [None, "small", "large"][rng.integers(3)]
    position = None if rng.random() < 0.4 else list(POSITIONS)[rng.integers(len(POSITIONS))]
    return draw(shape, colour, background, size, position, rng), caption(shape, colour, background, size, position)


@torch.no_grad()
def sample_pndm(unet, vae, text_encoder, tokenizer, caption_text, seed, scaling_factor, steps=20, guidance=7.5,
                latent_shape=(4, 8, 8)):
    """What diffusers' StableDiffusionPipeline does with the SD1 PNDM config (PLMS, skip_prk_steps, 'leading'
    spacing, steps_offset 1) and numpy latents (RandomState(seed).randn, float32); returns uint8 HWC."""
    acp = alphas_cumprod()
    ids = torch.tensor([tokenizer(""), tokenizer(caption_text)])
    ctx, _ = text_encoder(ids)
    x = torch.from_numpy(np.random.RandomState(seed).randn(1, *latent_shape).astype(np.float32))
    ratio = 1000 // steps
    ascending = [i * ratio + 1 for i in range(steps)]
    timesteps = list(reversed(ascending[:-1] + ascending[-2:-1] + ascending[-1:]))
    ets, cur_sample = [], None
    for counter, t in enumerate(timesteps):
        eps = unet(torch.cat([x, x]), torch.tensor(float(t)), ctx)
        eps = eps[:1] + guidance * (eps[1:] - eps[:1])
        prev_t = t - ratio
        if counter != 1:
            ets = ets[-3:] + [eps]
        else:
            prev_t, t = t, t + ratio
        if len(ets) == 1 and counter == 0:
            cur_sample = x
        elif len(ets) == 1 and counter == 1:
            eps = (eps + ets[-1]) / 2
            x, cur_sample = cur_sample, None
        elif len(ets) == 2:
            eps = (3 * ets[-1] - ets[-2]) / 2
        elif len(ets) == 3:
            eps = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
        else:
            eps = (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4]) / 24
        a_t = acp[t]
        a_prev = acp[prev_t] if prev_t >= 0 else acp[0]
        denom = a_t * (1 - a_prev).sqrt() + (a_t * (1 - a_t) * a_prev).sqrt()
        x = (a_prev / a_t).sqrt() * x - (a_prev - a_t) * eps / denom
    img = vae.decode(x / scaling_factor)
    img = (img / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.round(img * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# The image statistics the C++ test (tests/pipeline_demo_model_test.cpp) applies to generated images


def image_statistics(image):
    """image: HxWx3 uint8. Every pixel is labelled with its nearest COLOURS entry; the background is the most
    common label on the 2-pixel frame, the shape is the most common label among the other pixels; the shape's
    centroid is taken over the pixels labelled with the shape colour (relative, 0..1)."""
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], dtype=np.float64)
    px = image.reshape(-1, 3).astype(np.float64)
    labels = ((px[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1).reshape(image.shape[:2])
    h, w = labels.shape
    frame = np.ones_like(labels, dtype=bool)
    frame[2:h - 2, 2:w - 2] = False
    background = np.bincount(labels[frame], minlength=len(names)).argmax()
    inside = labels != background
    counts = np.bincount(labels[inside], minlength=len(names))
    shape = counts.argmax()
    ys, xs = np.nonzero(labels == shape)
    return {"background": names[background], "shape_colour": names[shape], "shape_pixels": int(counts[shape]),
            "centroid": [float((xs.mean() + 0.5) / w), float((ys.mean() + 0.5) / h)] if len(xs) else [0.5, 0.5]}


MIN_SHAPE_PIXELS = 40  # a small shape covers ~150 of the 4096 pixels


def position_matches(position, centroid):
    cx, cy = centroid
    if position == "center":
        return abs(cx - 0.5) < 0.15 and abs(cy - 0.5) < 0.15
    vertical, horizontal = position.split()
    return (cy < 0.5) == (vertical == "top") and (cx < 0.5) == (horizontal == "left")


def statistics_match(stats, colour, background, position=None):
    return (stats["background"] == background and stats["shape_colour"] == colour
            and stats["shape_pixels"] >= MIN_SHAPE_PIXELS
            and (position is None or position_matches(position, stats["centroid"])))

# (shape, colour, background, size, position) of the held-out captions the tests generate.
TEST_CASES = (("circle", "yellow", "blue", None, None),
              ("square", "red", "white", None, "top left"),
              ("triangle", "green", "black", "large", None),
              ("circle", "white", "red", "small", "bottom right"),
              ("square", "blue", "yellow", None, "center"))
