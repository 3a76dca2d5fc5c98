"""The guided-diffusion / ADM UNet (Dhariwal & Nichol, 2021) in any configuration, from deepinv's blocks.

deepinv's :class:`deepinv.models.DiffUNet` is this architecture with two fixed configurations (the
FFHQ-256 and ImageNet-256 checkpoints). Checkpoints people have come in more shapes (other widths,
channel multipliers, resolutions, attention layouts, class conditioning), so :class:`GuidedDiffusionUNet`
assembles the same module tree - with deepinv's own ``ResBlock``, ``AttentionBlock``, ``Downsample``,
``Upsample`` and ``TimestepEmbedSequential`` - from a :class:`GuidedUNetConfig`. Parameter names
match OpenAI's ``guided_diffusion.unet.UNetModel`` (and ``DiffUNet``) exactly, so their state dicts
load unchanged; :func:`config_from_state_dict` reads the configuration off a state dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GuidedUNetConfig:
    """Architecture arguments of guided-diffusion's ``UNetModel`` (``dims=2``).

    ``attention_ds`` are downsampling factors (``image_size // resolution``) with attention.
    ``num_heads``/``num_head_channels``/``use_new_attention_order`` have no parameters of their own
    and cannot be read off a state dict: the defaults are those of the DPS / guided-diffusion
    256x256 models (64 channels per head, legacy attention order).
    """

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_ds: tuple[int, ...]
    num_classes: int | None = None
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    num_heads: int = 4
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    use_new_attention_order: bool = False
    dropout: float = 0.0


class GuidedDiffusionUNet(nn.Module):
    """``model(x_t, t, y=None) -> eps`` (and the learned-variance channels when ``out_channels = 2C``)."""

    def __init__(self, config: GuidedUNetConfig) -> None:
        super().__init__()
        from deepinv.models.diffunet import (
            AttentionBlock,
            Downsample,
            ResBlock,
            TimestepEmbedSequential,
            Upsample,
            conv_nd,
            normalization,
            zero_module,
        )

        self.config = config
        c = config
        mc = c.model_channels
        emb_dim = mc * 4
        heads_up = c.num_heads if c.num_heads_upsample == -1 else c.num_heads_upsample
        self.model_channels = mc
        self.num_classes = c.num_classes
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if c.num_classes is not None:
            self.label_emb = nn.Embedding(c.num_classes, emb_dim)

        def res(ch_in: int, ch_out: int, **kw) -> nn.Module:
            return ResBlock(
                ch_in, emb_dim, c.dropout, out_channels=ch_out, dims=2, use_scale_shift_norm=c.use_scale_shift_norm, **kw
            )

        def attn(ch: int, heads: int) -> nn.Module:
            return AttentionBlock(
                ch, num_heads=heads, num_head_channels=c.num_head_channels, use_new_attention_order=c.use_new_attention_order
            )

        ch = input_ch = int(c.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(2)(c.in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in c.attention_ds:
                    layers.append(attn(ch, c.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(c.channel_mult) - 1:
                if c.resblock_updown:
                    down = res(ch, ch, down=True)
                else:
                    down = Downsample(ch, c.conv_resample, dims=2, out_channels=ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, c.num_heads), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(c.channel_mult))[::-1]:
            for i in range(c.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in c.attention_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == c.num_res_blocks:
                    if c.resblock_updown:
                        layers.append(res(ch, ch, up=True))
                    else:
                        layers.append(Upsample(ch, c.conv_resample, dims=2, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        out_conv = zero_module(conv_nd(2)(input_ch, c.out_channels, 3, padding=1))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), out_conv)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Network output for ``x_t`` at (possibly fractional) timesteps ``(B,)``; ``y`` class labels if conditional."""
        from deepinv.models.diffunet import timestep_embedding

        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y if and only if the model is class-conditional")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        if y is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def config_from_state_dict(
    state: Mapping[str, torch.Tensor],
    *,
    num_heads: int = 4,
    num_head_channels: int = 64,
    num_heads_upsample: int = -1,
    use_new_attention_order: bool = False,
    source: str = "state dict",
) -> GuidedUNetConfig:
    """Read a :class:`GuidedUNetConfig` off a guided-diffusion ``UNetModel`` state dict.

    Raises ``ValueError`` (naming ``source``) when the keys do not look like that architecture.
    """
    required = ("time_embed.0.weight", "input_blocks.0.0.weight", "out.2.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"{source}: not a guided-diffusion/ADM UNet state dict (missing {missing})")
    mc = int(state["time_embed.0.weight"].shape[1])
    in_channels = int(state["input_blocks.0.0.weight"].shape[1])
    out_channels = int(state["out.2.weight"].shape[0])
    num_classes = int(state["label_emb.weight"].shape[0]) if "label_emb.weight" in state else None

    def layers(prefix: str, index: int) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        pattern = re.compile(rf"^{prefix}\.{index}\.(\d+)\.(.+)$")
        for key in state:
            m = pattern.match(key)
            if m:
                found.setdefault(int(m.group(1)), set()).add(m.group(2))
        return found

    def is_res(names: set[str]) -> bool:
        return any(n.startswith("in_layers.") for n in names)

    def is_attn(names: set[str]) -> bool:
        return any(n.startswith("qkv.") for n in names)

    n_in = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("input_blocks."))
    n_out = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("output_blocks."))
    up_blocks = []
    for j in range(n_out):
        found = layers("output_blocks", j)
        if any(k > 0 and not is_attn(names) for k, names in found.items()):
            up_blocks.append(j)
    # Parameter-free resampling (average pooling / nearest upsampling without a conv) leaves no keys:
    # such down blocks show up as gaps in the input-block numbering.
    gaps = [j for j in range(1, n_in) if not layers("input_blocks", j)]
    n_levels = 1 + max(len(up_blocks), len(gaps))
    if n_out % n_levels or n_in != n_out:
        raise ValueError(f"{source}: block counts ({n_in} input, {n_out} output) do not fit a guided-diffusion UNet")
    n_res = n_out // n_levels - 1
    if n_res < 1:
        raise ValueError(f"{source}: could not infer num_res_blocks")

    channel_mult, attention_ds = [], []
    resblock_updown, conv_resample = True, True
    for level in range(n_levels):
        first = 1 + level * (n_res + 1)
        block = layers("input_blocks", first)
        if 0 not in block or not is_res(block[0]):
            raise ValueError(f"{source}: input block {first} is not a residual block")
        out_ch = int(state[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0])
        if out_ch % mc:
            raise ValueError(f"{source}: channels {out_ch} of input block {first} are not a multiple of {mc}")
        channel_mult.append(out_ch // mc)
        if 1 in block and is_attn(block[1]):
            attention_ds.append(2**level)
        if level < n_levels - 1:
            down = layers("input_blocks", first + n_res)
            if 0 in down and is_res(down[0]):
                resblock_updown = True
            else:
                resblock_updown = False
                conv_resample = 0 in down  # Downsample with a conv has "op.weight"; average pooling has no parameters
    emb_out = int(state["input_blocks.1.0.emb_layers.1.weight"].shape[0])
    first_out = int(state["input_blocks.1.0.out_layers.3.weight"].shape[0])
    return GuidedUNetConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        model_channels=mc,
        channel_mult=tuple(channel_mult),
        num_res_blocks=n_res,
        attention_ds=tuple(attention_ds),
        num_classes=num_classes,
        use_scale_shift_norm=emb_out == 2 * first_out,
        resblock_updown=resblock_updown,
        conv_resample=conv_resample,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_new_attention_order=use_new_attention_order,
    )
