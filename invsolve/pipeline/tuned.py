"""The one table of tuned sampler settings, keyed by sampler x problem kind x prior, with a recorded fallback.

Every entry says where it was measured. Entries for ``"tv"`` hold the TV weight ``lam`` tuned on a prior's data
domain (the catalogue's rule, tuned on ellipse phantoms, serves every other case). A run asks :func:`tuned_settings` and records its ``source``: an
exact match, or which fallback served it (the default prior's settings for another prior, the settings shared
by every kind, or the sampler's own defaults). Nothing ever fails for a combination never tuned.

Sources: DPS ``zeta`` and RED-Diff ``lr`` / ``lam`` from ``experiments/tune_samplers.py``
(``experiments/results/sampler_tuning.md``) on the tuning phantoms of the default prior; DPS on CT wants a larger
step at the demo's 100 steps than at 1000 (0.05: +2 dB over 0.02 on the tuning phantoms at 100 steps);
PiGDM and DDRM settings from the demo's tuning on its five tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The kind of an entry that serves every problem kind without its own entry.
ANY_KIND = "*"
DEFAULT_PRIOR = "default"
_SAMPLER_TUNING = "experiments/tune_samplers.py (experiments/results/sampler_tuning.md)"
_DEMO_TUNING = "the demo's tuning on its five tasks (CT 8/16 views, MRI 4x/8x, inpainting 50%)"
_BRAIN_TUNING = ("experiments/tune_samplers.py --data brain on 4 slices of the brain tuning split "
                 "(experiments/results/brain_tuning.md)")
_LATENT_TUNING = ("experiments/tune_samplers.py --data brain --prior latent_brain on 2 slices of the brain tuning "
                  "split (experiments/results/latent_brain_tuning.md)")

_SIDE_BY_SIDE = ("experiments/benchmarks/deepinv_side_by_side.py: lam climbed by factors of 3 from 7 on 2 slices of "
                 "the brain tuning split (experiments/results/deepinv_side_by_side.md)")

_BRAIN_3D_TUNING = ("experiments/mbir3d_brain.py on the top slab of the brain tuning split "
                    "(experiments/results/mbir3d_brain.md)")


@dataclass(frozen=True)
class Tuned:
    """Settings measured for ``sampler`` on problems of ``kind`` with ``prior``, up to ``max_steps`` steps."""

    sampler: str
    kind: str
    settings: Mapping[str, Any]
    tuned_on: str
    prior: str = DEFAULT_PRIOR
    max_steps: int | None = None
    source: str = _SAMPLER_TUNING


TUNED: tuple[Tuned, ...] = (
    Tuned("dps", "ct", {"zeta": 0.05}, "ct:views=8 and ct:views=16 at 100 steps", max_steps=200),
    Tuned("dps", "ct", {"zeta": 0.02}, "ct:views=8 and ct:views=16 at 1000 steps"),
    Tuned("dps", "sr", {"zeta": 3.0}, "sr:factor=4"),
    Tuned("dps", ANY_KIND, {"zeta": 1.0}, "mri:acceleration=4|8, inpainting:fraction=0.5, blur:sigma=1.5"),
    Tuned("ads", ANY_KIND, {"zeta": 1.0}, "DPS's step on mri:acceleration=4|8 (ADS guides its particles by DPS)"),
    Tuned("pigdm", ANY_KIND, {"data_variance": 0.16, "cg_max_iter": 30}, _DEMO_TUNING, source=_DEMO_TUNING),
    Tuned("ddrm", ANY_KIND, {"eta": 1.0}, _DEMO_TUNING, source=_DEMO_TUNING),
    Tuned("red-diff", "ct", {"lr": 0.02, "lam": 16.0}, "ct:views=8 and ct:views=16"),
    Tuned("red-diff", "mri", {"lr": 0.02, "lam": 0.1}, "mri:acceleration=4 and 8"),
    Tuned("red-diff", "inpainting", {"lr": 0.02, "lam": 0.03}, "inpainting:fraction=0.5"),
    # the CG pseudo-inverse amplifies the noise of a deblurring problem: start from the adjoint
    Tuned("red-diff", "blur", {"lr": 0.02, "lam": 0.03, "init": "adjoint"}, "blur:sigma=1.5"),
    Tuned("red-diff", "sr", {"lr": 0.02, "lam": 0.03}, "sr:factor=4"),
    # the brain prior, on the brain tuning split (4 slices; experiments/results/brain_tuning.md)
    Tuned("dps", "ct", {"zeta": 0.05}, "ct:views=8 at 100 steps (16 views: 0.03, +0.1 dB)", prior="brain",
          max_steps=200, source=_BRAIN_TUNING),
    Tuned("dps", "mri", {"zeta": 1.0}, "mri:acceleration=4 and 8 at 100 steps", prior="brain", source=_BRAIN_TUNING),
    Tuned("dps", "inpainting", {"zeta": 1.0}, "inpainting:fraction=0.5 at 100 steps", prior="brain",
          source=_BRAIN_TUNING),
    Tuned("pigdm", "ct", {"data_variance": 0.16, "cg_max_iter": 30}, "ct:views=8", prior="brain", source=_BRAIN_TUNING),
    Tuned("pigdm", "mri", {"data_variance": 0.5, "cg_max_iter": 30}, "mri:acceleration=8", prior="brain",
          source=_BRAIN_TUNING),
    Tuned("pigdm", "inpainting", {"data_variance": 0.05, "cg_max_iter": 30}, "inpainting:fraction=0.5",
          prior="brain", source=_BRAIN_TUNING),
    Tuned("red-diff", "ct", {"lr": 0.02, "lam": 16.0}, "ct:views=8", prior="brain", source=_BRAIN_TUNING),
    Tuned("red-diff", "mri", {"lr": 0.05, "lam": 0.03}, "mri:acceleration=8", prior="brain", source=_BRAIN_TUNING),
    Tuned("red-diff", "inpainting", {"lr": 0.05, "lam": 0.03}, "inpainting:fraction=0.5", prior="brain",
          source=_BRAIN_TUNING),
    Tuned("ddrm", ANY_KIND, {"eta": 1.0}, "ct:views=8, mri:acceleration=8, inpainting:fraction=0.5", prior="brain",
          source=_BRAIN_TUNING),
    # PSNR flat (within 0.02 dB) for lam <= 0.1 on every task; CT 8 views peaks at 0.09 (+1.2 dB over the paper's 7)
    Tuned("diffpir", ANY_KIND, {"lam": 0.1}, "ct:views=8, mri:acceleration=4, inpainting:fraction=0.5 at 100 steps",
          prior="brain", source=_SIDE_BY_SIDE),
    # TV on brain images (the catalogue's rule was tuned on ellipse phantoms)
    Tuned("tv", "ct", {"lam": 0.1}, "ct:views=8 and ct:views=16", prior="brain", source=_BRAIN_TUNING),
    Tuned("tv", "mri", {"lam": 0.01}, "mri:acceleration=4 (8x: 0.03 is 0.1 dB better)", prior="brain",
          source=_BRAIN_TUNING),
    Tuned("tv", "inpainting", {"lam": 0.03}, "inpainting:fraction=0.5", prior="brain", source=_BRAIN_TUNING),
    Tuned("tv", "blur", {"lam": 0.001}, "blur:sigma=1.5", prior="brain", source=_BRAIN_TUNING),
    Tuned("tv", "sr", {"lam": 0.003}, "sr:factor=4", prior="brain", source=_BRAIN_TUNING),
    # the shipped latent prior, on 2 slices of the brain tuning split (experiments/results/latent_brain_tuning.md)
    Tuned("stsl", ANY_KIND, {"lr": 0.05, "sigma_start": 80.0}, "mri:acceleration=8 and inpainting:fraction=0.5 at "
          "50 x 5 (lr 0.02-0.6, sigma_start 2-80)", prior="latent_brain", source=_LATENT_TUNING),
    Tuned("stsl", "ct", {"lr": 0.15, "sigma_start": 80.0}, "ct:views=8 at 50 x 5 (lr 0.02-0.6)",
          prior="latent_brain", source=_LATENT_TUNING),
    Tuned("stsl", "sr", {"lr": 0.15, "sigma_start": 80.0}, "sr:factor=4 at 50 x 5 (lr 0.02-0.6)",
          prior="latent_brain", source=_LATENT_TUNING),
    # the shipped token prior, on 2 slices of the brain tuning split (experiments/results/token_brain_tuning.md)
    Tuned("aps", ANY_KIND, {"lr": 1.5, "inner_steps": 20, "anchor_temperature": 100.0}, "ct:views=8, "
          "mri:acceleration=8, inpainting:fraction=0.5, sr:factor=4 at 16 steps (lr 0.2-4, inner_steps 20-50, kl 0-1; "
          "anchor_temperature 1-1000 on ct and sr)", prior="token_brain",
          source="experiments/token_brain.py --split tuning on 2 slices (experiments/results/token_brain_tuning.md)"),
    # latent DPS at 2200 steps (4x STSL's NFE); PSLD shares its zeta (gamma 0.1)
    Tuned("latent-dps", "ct", {"zeta": 0.03}, "ct:views=8 at 2200 steps (zeta 0.01-1)", prior="latent_brain",
          source=_LATENT_TUNING),
    Tuned("latent-dps", "inpainting", {"zeta": 0.3}, "inpainting:fraction=0.5 at 2200 steps (zeta 0.3-1)",
          prior="latent_brain", source=_LATENT_TUNING),
    Tuned("latent-dps", ANY_KIND, {"zeta": 1.0}, "sr:factor=4 at 2200 steps (zeta 0.3-3); mri:acceleration=8 keeps "
          "pixel DPS's 1.0 (0.3 was 24.2 dB)", prior="latent_brain", source=_LATENT_TUNING),
    Tuned("psld", "ct", {"zeta": 0.03, "gamma": 0.1}, "latent DPS's zeta on ct:views=8", prior="latent_brain",
          source=_LATENT_TUNING),
    Tuned("psld", "inpainting", {"zeta": 0.3, "gamma": 0.1}, "latent DPS's zeta on inpainting:fraction=0.5",
          prior="latent_brain", source=_LATENT_TUNING),
    Tuned("psld", ANY_KIND, {"zeta": 1.0, "gamma": 0.1}, "latent DPS's zeta", prior="latent_brain",
          source=_LATENT_TUNING),
    # 3D on brains: DiffusionMBIR + in-plane TV sampled by DDS at 50 steps (the better variant on average)
    Tuned("dds3d", "ct", {"lam": 1e-4, "lam_xy": 1e-4, "admm_iterations": 4},
          "sparse-view CT (8 views) on the 12-slice brain tuning volume", prior="brain_slice", max_steps=200,
          source=_BRAIN_3D_TUNING),
    Tuned("dds3d", "mri", {"lam": 1e-4, "lam_xy": 1e-4, "admm_iterations": 4},
          "3D MRI, one column mask (8x) for every slice, on the 12-slice brain tuning volume (a 3D (k_z, k_y) "
          "mask chose lam 3e-4, lam_xy 2e-4)", prior="brain_slice", max_steps=200, source=_BRAIN_3D_TUNING),
)


@dataclass(frozen=True)
class TunedLookup:
    """The settings a run uses and where they come from (recorded with the run)."""

    settings: dict[str, Any]
    source: str
    exact: bool = False  # tuned for this very kind and prior (no fallback)


def _matches(entry: Tuned, sampler: str, kind: str, prior: str, steps: int) -> bool:
    return (entry.sampler == sampler and entry.kind == kind and entry.prior == prior
            and (entry.max_steps is None or steps <= entry.max_steps))


def tuned_settings(sampler: str, kind: str, prior: str, steps: int, *,
                   table: tuple[Tuned, ...] = TUNED) -> TunedLookup:
    """The settings for ``sampler`` on a problem of ``kind`` with ``prior`` at ``steps`` steps.

    Search order (the first hit wins, entries in table order): this kind and prior; this kind and the default
    prior; any kind and this prior; any kind and the default prior; else no settings (the sampler's defaults).
    """
    attempts = ((kind, prior, "tuned for this kind and prior"),
                (kind, DEFAULT_PRIOR, f"fallback: tuned for the default prior, used for prior {prior!r}"),
                (ANY_KIND, prior, f"shared across kinds, used for kind {kind!r}"),
                (ANY_KIND, DEFAULT_PRIOR, f"fallback: shared across kinds for the default prior, used for kind "
                                          f"{kind!r} and prior {prior!r}"))
    for rank, (want_kind, want_prior, how) in enumerate(attempts):
        for entry in table:
            if _matches(entry, sampler, want_kind, want_prior, steps):
                return TunedLookup(dict(entry.settings), f"{how} (on {entry.tuned_on}; {entry.source})", rank == 0)
    return TunedLookup({}, f"fallback: never tuned for {sampler!r} on kind {kind!r}: the sampler's own defaults")
