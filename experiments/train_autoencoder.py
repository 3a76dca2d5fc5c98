"""Train a small diffusers ``AutoencoderKL`` on the brain training stream (64x64 -> 4 x 16 x 16 latents).

Loss: L1 + L2 reconstruction of ``decode(sample of q(z | x))`` plus a small KL to N(0, I) (no perceptual term: its
network weights cannot be downloaded). Adam, batch 16, seeded; the stream is ``BrainSlices(split="train")`` (the
brain prior's). Writes ``autoencoder.safetensors`` and ``autoencoder.json`` (the diffusers config and the recipe)
into ``--out`` atomically, and prints the reconstruction PSNR on held-out slices (the latent models' ceiling).

    OMP_NUM_THREADS=2 python experiments/train_autoencoder.py --out runs/autoencoder --steps 3000
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import invsolve  # noqa: F401  (applies the torchvision shim before diffusers is imported)
from invsolve._atomic import atomic_path, write_text_atomic
from invsolve.datasets.brain import BrainSlices, BrainTemplates

CONFIG = {"in_channels": 1, "out_channels": 1, "latent_channels": 4, "block_out_channels": [32, 64, 64],
          "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
          "layers_per_block": 1, "norm_num_groups": 16, "sample_size": 64, "mid_block_add_attention": False}


def build(config: dict):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def heldout_psnr(model, images: torch.Tensor) -> float:
    with torch.no_grad():
        recon = model.decode(model.encode(images).latent_dist.mean).sample.clamp(0, 1)
    mse = (recon - images).square().flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl", type=float, default=1e-6, help="weight of the KL term")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = build(CONFIG)
    templates = BrainTemplates()
    train = BrainSlices(64, split="train", seed=args.seed, templates=templates)
    heldout = torch.stack([BrainSlices(64, split="heldout", seed=0, templates=templates)[i] for i in range(32)])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.monotonic()
    for step in range(args.steps):
        batch = torch.stack([train[step * args.batch + i] for i in range(args.batch)])
        posterior = model.encode(batch).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = model.decode(z).sample
        loss = (recon - batch).abs().mean() + (recon - batch).square().mean() + args.kl * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay to 10%
            group["lr"] = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / args.steps)))
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} held-out PSNR {heldout_psnr(model, heldout):.2f} dB "
                  f"({time.monotonic() - start:.0f} s)", flush=True)
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "autoencoder.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with torch.no_grad():
        latents = torch.cat([model.encode(heldout[i:i + 16]).latent_dist.mean for i in range(0, 32, 16)])
    recipe = {"config": CONFIG, "latent_std": float(latents.std()), "heldout_psnr": heldout_psnr(model, heldout),
              "command": f"python experiments/train_autoencoder.py --out {args.out} --steps {args.steps} "
                         f"--batch {args.batch} --lr {args.lr} --kl {args.kl} --seed {args.seed}",
              "seconds": time.monotonic() - start, "data": "BrainSlices(64, split='train', seed=0)"}
    write_text_atomic(args.out / "autoencoder.json", json.dumps(recipe, indent=2) + "\n")
    print(json.dumps(recipe, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
