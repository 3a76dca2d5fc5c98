"""Train a small diffusers autoencoder on the brain training stream: an ``AutoencoderKL`` (``--kind kl``, 64x64 ->
4 x 16 x 16 latents, for latent priors) or a ``VQModel`` tokenizer (``--kind vq``, 64x64 -> 16 x 16 tokens of a
256-code codebook, for masked-token priors).

Loss: L1 + L2 reconstruction, plus for ``kl`` a small KL of ``q(z | x)`` to N(0, I) (the decoder sees a sample of
``q``), for ``vq`` the VQ-VAE codebook and commitment terms (van den Oord et al., 2017, eq. 3; diffusers'
``VectorQuantizer``), the codebook initialised from encoder outputs and codes unused for ``--restart-every`` steps
re-seeded from them (dead-code restart). No perceptual term: its network weights cannot be downloaded. Adam, seeded;
the stream is ``BrainSlices(split="train")`` (the brain prior's). Writes ``STEM.safetensors`` and ``STEM.json``
(the diffusers config and the recipe; ``STEM`` is ``autoencoder`` or ``tokenizer``) into ``--out`` atomically and
prints the reconstruction PSNR on 32 held-out slices (the ceiling of every model built on it).

    OMP_NUM_THREADS=2 python experiments/train_autoencoder.py --out runs/autoencoder --steps 3000
    OMP_NUM_THREADS=2 python experiments/train_autoencoder.py --kind vq --out runs/tokenizer --steps 2000
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import invsolve  # noqa: F401  (applies the torchvision shim before diffusers is imported)
from invsolve._atomic import save_weights_with_recipe
from invsolve.datasets.brain import BrainSlices, BrainTemplates

_BODY = {"in_channels": 1, "out_channels": 1, "block_out_channels": [32, 64, 64],
         "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
         "layers_per_block": 1, "norm_num_groups": 16, "sample_size": 64, "mid_block_add_attention": False}
CONFIG = {**_BODY, "latent_channels": 4}
VQ_CONFIG = {**_BODY, "latent_channels": 8, "vq_embed_dim": 8, "num_vq_embeddings": 256}
STEMS = {"kl": "autoencoder", "vq": "tokenizer"}


def build(kind: str, config: dict):
    from diffusers import AutoencoderKL, VQModel

    return (AutoencoderKL if kind == "kl" else VQModel)(**config)


def reconstruct(kind: str, model, images: torch.Tensor) -> torch.Tensor:
    """``decode(encode(x))`` as the priors use it: the KL posterior's mean; the nearest codes."""
    if kind == "kl":
        return model.decode(model.encode(images).latent_dist.mean).sample
    return model.decode(model.encode(images).latents).sample


def heldout_psnr(kind: str, model, images: torch.Tensor) -> float:
    with torch.no_grad():
        recon = reconstruct(kind, model, images).clamp(0, 1)
    mse = (recon - images).square().flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean())


def _flat(h: torch.Tensor) -> torch.Tensor:
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])


class CodeUsage:
    """Counts code use and re-seeds codes unused over a window from random encoder outputs (dead-code restart)."""

    def __init__(self, codebook: torch.nn.Embedding, every: int, generator: torch.Generator) -> None:
        self.codebook, self.every, self.generator = codebook, every, generator
        self.counts = torch.zeros(codebook.num_embeddings)
        self.restarted = 0
        self.last_window = 0  # codes used in the last finished window

    def initialise(self, h: torch.Tensor) -> None:
        flat = _flat(h.detach())
        pick = torch.randint(len(flat), (self.codebook.num_embeddings,), generator=self.generator)
        with torch.no_grad():
            self.codebook.weight.copy_(flat[pick])

    def update(self, step: int, h: torch.Tensor, indices: torch.Tensor) -> None:
        self.counts += torch.bincount(indices.reshape(-1), minlength=len(self.counts)).float()
        if (step + 1) % self.every:
            return
        self.last_window = int((self.counts > 0).sum())
        dead = (self.counts == 0).nonzero().flatten()
        if len(dead):
            flat = _flat(h.detach())
            pick = torch.randint(len(flat), (len(dead),), generator=self.generator)
            with torch.no_grad():
                self.codebook.weight[dead] = flat[pick]
            self.restarted += len(dead)
        self.counts.zero_()

    def in_use(self) -> int:
        return max(self.last_window, int((self.counts > 0).sum()))


def training_loss(kind: str, model, batch: torch.Tensor, args, generator, usage: CodeUsage | None, step: int):
    if kind == "kl":
        posterior = model.encode(batch).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = model.decode(z).sample
        extra = args.kl * posterior.kl().mean()
    else:
        h = model.encode(batch).latents
        if step == 0:
            usage.initialise(h)
        quantized, extra, (_, _, indices) = model.quantize(h)
        usage.update(step, h, indices)
        recon = model.decode(quantized, force_not_quantize=True).sample
    return (recon - batch).abs().mean() + (recon - batch).square().mean() + extra


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kind", choices=sorted(STEMS), default="kl")
    parser.add_argument("--restart-every", type=int, default=100, help="vq: steps between dead-code restarts")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl", type=float, default=1e-6, help="weight of the KL term")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    config = CONFIG if args.kind == "kl" else VQ_CONFIG
    model = build(args.kind, config)
    templates = BrainTemplates()
    train = BrainSlices(64, split="train", seed=args.seed, templates=templates)
    heldout = torch.stack([BrainSlices(64, split="heldout", seed=0, templates=templates)[i] for i in range(32)])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    usage = CodeUsage(model.quantize.embedding, args.restart_every, generator) if args.kind == "vq" else None
    start = time.monotonic()
    for step in range(args.steps):
        batch = torch.stack([train[step * args.batch + i] for i in range(args.batch)])
        loss = training_loss(args.kind, model, batch, args, generator, usage, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay to 10%
            group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / args.steps)))
        if step % 250 == 0 or step == args.steps - 1:
            codes = f" codes in use {usage.in_use()} restarted {usage.restarted}" if usage else ""
            print(f"step {step} loss {loss.item():.4f} held-out PSNR {heldout_psnr(args.kind, model, heldout):.2f} dB"
                  f"{codes} ({time.monotonic() - start:.0f} s)", flush=True)
    stem = STEMS[args.kind]
    recipe = {"config": config, "heldout_psnr": heldout_psnr(args.kind, model, heldout),
              "command": f"python experiments/train_autoencoder.py --kind {args.kind} --out {args.out} --steps "
                         f"{args.steps} --batch {args.batch} --lr {args.lr} --kl {args.kl} --restart-every "
                         f"{args.restart_every} --seed {args.seed}",
              "seconds": time.monotonic() - start, "data": "BrainSlices(64, split='train', seed=0)"}
    with torch.no_grad():
        if args.kind == "kl":
            latents = torch.cat([model.encode(heldout[i:i + 16]).latent_dist.mean for i in range(0, 32, 16)])
            recipe["latent_std"] = float(latents.std())
        else:
            used = model.quantize(model.encode(heldout).latents)[2][2].unique()
            recipe["heldout_codes_in_use"] = int(len(used))
    save_weights_with_recipe(args.out, stem, model.state_dict(), recipe)
    print(json.dumps(recipe, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
