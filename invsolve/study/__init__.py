"""Studies: a YAML config -> dataset x operator x prior x sampler x seed -> per-case results, tables, figures.

Resumable, atomic and shardable across ``torchrun`` processes; see :mod:`invsolve.study.runner`.
"""

from invsolve.study.cases import Case, enumerate_cases, shard
from invsolve.study.config import StudyConfig, load_config, parse_config
from invsolve.study.runner import StudyReport, run_study

__all__ = ["Case", "StudyConfig", "StudyReport", "enumerate_cases", "load_config", "parse_config", "run_study",
           "shard"]
