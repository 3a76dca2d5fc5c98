"""From data to reconstructions: the problem catalogue, the tuned settings, methods by name, problems, and
the one reconstruction entry point :func:`run_method`.

Shared by ``invsolve reconstruct``, ``invsolve benchmark``, the demo and the study runner (:mod:`invsolve.study`).
"""

from invsolve.pipeline.catalogue import (
    KINDS,
    OPERATOR_KINDS,
    OperatorSpec,
    ProblemSetup,
    SetupCache,
    image_setup,
    parse_operator_spec,
)
from invsolve.pipeline.methods import MethodResult, MethodSpec, method_names, parse_method_spec, run_method
from invsolve.pipeline.tuned import TUNED, tuned_settings

__all__ = ["KINDS", "OPERATOR_KINDS", "TUNED", "MethodResult", "MethodSpec", "OperatorSpec", "ProblemSetup",
           "SetupCache", "image_setup", "method_names", "parse_method_spec", "parse_operator_spec", "run_method",
           "tuned_settings"]
