"""Seeds of a reconstruction, derived from its identity so that each is independent of which other runs exist.

The sampling mask / inpainting pattern is drawn from ``mask_seed = seed`` (one mask per operator and seed,
shared by every slice and method, so methods are compared on the same data); the measurement noise and the
sampler's generator come from hashes of the item, the operator and the run (:func:`noise_seed`,
:func:`sampler_seed`). Studies, ``invsolve reconstruct`` (slices and whole volumes) and the benchmark all use these.
"""

from __future__ import annotations

import hashlib


def hashed_seed(*parts: object) -> int:
    """A torch seed (< 2**56) from the SHA-256 of ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:7], "little")


def noise_seed(item: str, volume: int | None, operator_text: str, seed: int) -> int:
    """The seed of the measurement noise of ``item`` under an operator (shared by every method run on it)."""
    return hashed_seed("noise", item, volume, operator_text, seed)


def sampler_seed(item: str, volume: int | None, run_key: str) -> int:
    """The seed of the sampler's generator for one run (operator, prior, method, seed) on ``item``."""
    return hashed_seed("sampler", item, volume, run_key)
