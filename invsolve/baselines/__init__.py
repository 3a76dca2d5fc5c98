"""Classical reconstruction baselines every comparison needs (FBP and zero-filling live on the operators)."""

from invsolve.baselines.tv import finite_difference, finite_difference_adjoint, tv_reconstruct

__all__ = ["finite_difference", "finite_difference_adjoint", "tv_reconstruct"]
