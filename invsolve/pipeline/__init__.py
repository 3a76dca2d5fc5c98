"""From data to reconstructions: operator and sampler specs by name, data items, problems.

Shared by the ``invsolve reconstruct`` command and the study runner (:mod:`invsolve.study`).
"""

from invsolve.pipeline.operator_specs import OPERATOR_KINDS, OperatorSpec, image_task, parse_operator_spec
from invsolve.pipeline.sampler_specs import METHOD_NAMES, MethodResult, MethodSpec, parse_method_spec, run_method

__all__ = ["METHOD_NAMES", "OPERATOR_KINDS", "MethodResult", "MethodSpec", "OperatorSpec", "image_task",
           "parse_method_spec", "parse_operator_spec", "run_method"]
