"""Train a masked-token transformer (MaskGIT, Chang et al., CVPR 2022) on the codes of a VQ tokenizer.

The tokenizer (``experiments/train_autoencoder.py --kind vq``) turns ``--pool`` slices of the brain training stream
(``BrainSlices(split="train")``, the brain prior's) into code grids once; each step draws a batch of them, masks
``ceil(cos(pi/2 r) L)`` random positions per grid (``r ~ U(0, 1)``, the cosine schedule decoding uses) and
minimises the cross-entropy of the true codes at the masked positions. AdamW with warm-up and cosine decay, seeded.
Writes ``STEM.safetensors`` and ``STEM.json`` (the network config, the recipe, and the masked-token cross-entropy
and accuracy on tokens of 64 held-out slices at mask ratio 0.5) into ``--out`` atomically.

    OMP_NUM_THREADS=2 python experiments/train_token_prior.py --tokenizer runs/tokenizer --out runs/token_prior \\
        --steps 3000
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
from invsolve.priors.tokens import MaskedTokenTransformer, TokenizerFiles


def tokenize_slices(tokenizer: TokenizerFiles, stream, count: int, batch: int = 64) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([tokenizer.tokenize(torch.stack([stream[i] for i in range(s, min(count, s + batch))]))
                          for s in range(0, count, batch)])


def random_mask(codes: torch.Tensor, mask_id: int, generator: torch.Generator,
                ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``codes (B, L)`` with a cosine-distributed (or fixed ``ratio``) share of random positions masked, and the
    boolean mask."""
    b, length = codes.shape
    r = torch.rand(b, generator=generator) if ratio is None else None
    share = torch.cos(math.pi / 2 * r) if ratio is None else torch.full((b,), ratio)
    count = (share * length).ceil().clamp(1, length).long()
    rank = torch.rand(b, length, generator=generator).argsort(dim=1).argsort(dim=1)
    masked = rank < count[:, None]
    return codes.masked_fill(masked, mask_id), masked


def masked_scores(model, codes: torch.Tensor, mask_id: int, generator: torch.Generator) -> tuple[float, float]:
    """Cross-entropy (nats) and accuracy of the true codes at half the positions masked."""
    inputs, masked = random_mask(codes, mask_id, generator, ratio=0.5)
    with torch.no_grad():
        logits = model(inputs)[masked]
    target = codes[masked]
    return (float(torch.nn.functional.cross_entropy(logits, target)),
            float((logits.argmax(-1) == target).float().mean()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder of tokenizer.safetensors/.json")
    parser.add_argument("--tokenizer-stem", default="tokenizer")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stem", default="token_prior")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pool", type=int, default=6000, help="training slices tokenized once")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    tokenizer = TokenizerFiles(args.tokenizer, stem=args.tokenizer_stem)
    k = tokenizer.codebook.shape[0]
    length = tokenizer.token_shape[0] * tokenizer.token_shape[1]
    templates = BrainTemplates()
    start = time.monotonic()
    pool = tokenize_slices(tokenizer, BrainSlices(64, split="train", seed=args.seed, templates=templates), args.pool)
    heldout = tokenize_slices(tokenizer, BrainSlices(64, split="heldout", seed=0, templates=templates), 64)
    print(f"tokenized {len(pool)} training slices ({time.monotonic() - start:.0f} s); codes in use "
          f"{len(pool.unique())} of {k}", flush=True)
    model = MaskedTokenTransformer(k, length, args.width, args.depth, args.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    warmup = max(1, args.steps // 20)
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        codes = pool[torch.randint(len(pool), (args.batch,), generator=generator)]
        inputs, masked = random_mask(codes, k, generator)
        loss = torch.nn.functional.cross_entropy(model(inputs)[masked], codes[masked], label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0 or step == args.steps - 1:
            model.eval()
            ce, acc = masked_scores(model, heldout, k, torch.Generator().manual_seed(1))
            model.train()
            print(f"step {step} loss {loss.item():.3f} held-out masked CE {ce:.3f} accuracy {acc:.3f} "
                  f"({time.monotonic() - start:.0f} s)", flush=True)
    model.eval()
    ce, acc = masked_scores(model, heldout, k, torch.Generator().manual_seed(1))
    recipe = {"config": model.config, "heldout_masked_ce": ce, "heldout_masked_accuracy": acc,
              "tokenizer": str(args.tokenizer / args.tokenizer_stem),
              "command": f"python experiments/train_token_prior.py --tokenizer {args.tokenizer} --out {args.out} "
                         f"--steps {args.steps} --batch {args.batch} --pool {args.pool} --lr {args.lr} --width "
                         f"{args.width} --depth {args.depth} --heads {args.heads} --seed {args.seed}",
              "seconds": time.monotonic() - start, "data": f"BrainSlices(64, split='train', seed={args.seed})"}
    save_weights_with_recipe(args.out, args.stem, model.state_dict(), recipe)
    print(json.dumps(recipe, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
