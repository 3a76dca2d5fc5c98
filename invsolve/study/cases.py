"""The cases of a study: dataset item x operator x prior x sampler x seed, each with an id and its seeds.

The list is a pure function of the config (same config, same cases in the same order), which is
what lets a rerun skip finished cases and lets ``torchrun`` processes split the list without
talking to each other: the cases sharing a measurement (item x operator x seed, every method and
prior) form a group, and process ``r`` of ``N`` runs groups ``r, r + N, r + 2N, ...`` (balanced
work, and each process builds a measurement once for all the methods run on it).

Seeds (all recorded in each case's result): the sampling mask / inpainting pattern is drawn from
``mask_seed = seed`` (one mask per operator and seed, shared by every slice and method, so methods
are compared on the same data); the measurement noise and the sampler's generator from hashes of
the case's identity, so each is independent of which other cases exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from invsolve.pipeline.catalogue import OperatorSpec
from invsolve.pipeline.items import ItemRef, list_items
from invsolve.pipeline.methods import MethodSpec, goes_with
from invsolve.pipeline.seeds import noise_seed, sampler_seed
from invsolve.study.config import PriorSpec, StudyConfig


@dataclass(frozen=True)
class Case:
    item: ItemRef
    operator: OperatorSpec
    prior: PriorSpec
    method: MethodSpec
    seed: int

    @property
    def problem_key(self) -> tuple:
        """Cases with the same key share the measurement (same item, operator and seed)."""
        return (self.item, self.operator.text, self.seed)

    @property
    def run_key(self) -> str:
        """One reconstruction setting (operator, prior, method, seed): a column of the results."""
        return f"{self.operator.text}|{self.prior.name}|{self.method.label}|{self.seed}"

    @property
    def case_id(self) -> str:
        return hashlib.sha256(f"{self.item.name}|{self.item.volume}|{self.run_key}".encode()).hexdigest()[:16]

    @property
    def mask_seed(self) -> int:
        return self.seed

    @property
    def noise_seed(self) -> int:
        return noise_seed(self.item.name, self.item.volume, self.operator.text, self.seed)

    @property
    def sampler_seed(self) -> int:
        return sampler_seed(self.item.name, self.item.volume, self.run_key)


def pairs_with(operator: OperatorSpec, method: MethodSpec) -> bool:
    """Active masks go with samplers that choose the mask only, and those samplers with active masks only."""
    return goes_with(operator.is_active, False, method)


def enumerate_cases(config: StudyConfig) -> list[Case]:
    """Every case of ``config`` in a fixed order (items outermost, so a volume's slices finish together).

    Operator x sampler pairs that do not go together (:func:`pairs_with`) are not cases.
    """
    items = list_items(config.dataset)
    return [Case(item, op, prior, method, seed)
            for item in items for op in config.operators for prior in config.priors
            for seed in config.seeds for method in config.samplers if pairs_with(op, method)]


def shard(cases: list[Case], rank: int, world_size: int) -> list[Case]:
    """The cases process ``rank`` of ``world_size`` runs: every ``world_size``-th measurement group."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    ordinal: dict[tuple, int] = {}
    for case in cases:
        ordinal.setdefault(case.problem_key, len(ordinal))
    return [c for c in cases if ordinal[c.problem_key] % world_size == rank]
