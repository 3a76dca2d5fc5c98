"""One contract over every operator that ``invsolve.operators`` exports (SPEC section 4).

Cases live in ``tests/operator_cases/<area>.py``; each module defines
``CASES = {case_id: (factory, supports_float64)}`` where ``factory(dtype)``
builds a small operator on the CPU. A case whose backend is an optional extra
(e.g. ASTRA) uses ``(factory, supports_float64, OperatorClass)`` and calls
``pytest.importorskip`` inside its factory. The coverage test enumerates the exports,
so a newly exported operator class without a case fails the suite.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

import invsolve.operators as ops
from invsolve.operators import LinearOperator, Operator

CASE_DIR = Path(__file__).parent / "operator_cases"


def _load_cases() -> dict:
    cases = {}
    for path in sorted(CASE_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"operator_cases_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for case_id, value in module.CASES.items():
            assert case_id not in cases, f"duplicate operator case id {case_id}"
            cases[case_id] = tuple(value)
    return cases


CASES = _load_cases()
IDS = sorted(CASES)
FLOAT64_IDS = [i for i in IDS if CASES[i][1]]


def build(case_id: str, dtype: torch.dtype = torch.float32) -> Operator:
    return CASES[case_id][0](dtype)


def covered_class(case_id: str) -> type:
    if len(CASES[case_id]) == 3:
        return CASES[case_id][2]
    return type(build(case_id))


def random_x(op: Operator, batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *op.x_shape), generator=g, dtype=dtype)


def random_y(op: Operator, batch: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *op.y_shape), generator=g, dtype=dtype)


def exported_operator_classes() -> list[type]:
    classes = []
    for name in ops.__all__:
        obj = getattr(ops, name)
        if inspect.isclass(obj) and issubclass(obj, Operator) and not inspect.isabstract(obj):
            classes.append(obj)
    return classes


def test_every_exported_operator_has_a_contract_case():
    covered = {covered_class(case_id) for case_id in IDS}
    missing = [cls.__name__ for cls in exported_operator_classes() if cls not in covered]
    assert not missing, f"exported operators without a contract case in tests/operator_cases/: {missing}"


@pytest.mark.parametrize("case_id", IDS)
def test_shapes(case_id):
    op = build(case_id)
    x = random_x(op, 3, torch.float32)
    y = op.A(x)
    assert tuple(y.shape) == (3, *op.y_shape)
    assert y.dtype == torch.float32
    if op.linear:
        assert tuple(op.A_adjoint(random_y(op, 3, torch.float32)).shape) == (3, *op.x_shape)


def adjoint_relative_error(op: LinearOperator, dtype: torch.dtype) -> float:
    x = random_x(op, 2, dtype)
    y = random_y(op, 2, dtype)
    lhs = (op.A(x).double() * y.double()).sum()
    rhs = (x.double() * op.A_adjoint(y).double()).sum()
    scale = max(abs(float(lhs)), abs(float(rhs)))
    assert scale > 0, "degenerate adjoint test: both inner products are zero"
    return abs(float(lhs - rhs)) / scale


@pytest.mark.parametrize("case_id", IDS)
def test_adjointness_float32(case_id):
    op = build(case_id)
    if not op.linear:
        pytest.skip("nonlinear operator: no adjoint")
    # float32 rounding of the deepinv Radon transform's interpolation reaches ~2.4e-5 on some CPUs (seen on
    # a 2-core x86_64 machine); a wrong adjoint is off by O(1).
    assert adjoint_relative_error(op, torch.float32) <= 1e-4


@pytest.mark.parametrize("case_id", FLOAT64_IDS)
def test_adjointness_float64(case_id):
    op = build(case_id, torch.float64)
    if not op.linear:
        pytest.skip("nonlinear operator: no adjoint")
    assert adjoint_relative_error(op, torch.float64) <= 1e-12


@pytest.mark.parametrize("case_id", IDS)
def test_vjp_matches_autograd(case_id):
    op = build(case_id)
    x = random_x(op, 2, torch.float32).requires_grad_(True)
    v = random_y(op, 2, torch.float32)
    (autograd,) = torch.autograd.grad(op.A(x), x, grad_outputs=v)
    ours = op.vjp(x.detach(), v)
    err = (ours - autograd).norm() / autograd.norm().clamp_min(1e-30)
    assert float(err) <= 1e-5
    if op.linear:
        adj = op.A_adjoint(v)
        assert float((adj - autograd).norm() / autograd.norm().clamp_min(1e-30)) <= 1e-5


@pytest.mark.parametrize("case_id", IDS)
def test_batch_independence(case_id):
    op = build(case_id)
    x = random_x(op, 3, torch.float32)
    batched = op.A(x)
    for i in range(3):
        single = op.A(x[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-5, atol=1e-5 * float(single.abs().max()) + 1e-7)
    if op.linear:
        y = random_y(op, 3, torch.float32)
        batched_adj = op.A_adjoint(y)
        for i in range(3):
            single = op.A_adjoint(y[i : i + 1])
            torch.testing.assert_close(
                batched_adj[i : i + 1], single, rtol=1e-5, atol=1e-5 * float(single.abs().max()) + 1e-7
            )


@pytest.mark.parametrize("case_id", IDS)
def test_determinism(case_id):
    op = build(case_id)
    x = random_x(op, 2, torch.float32)
    assert torch.equal(op.A(x), op.A(x))
    assert torch.equal(build(case_id).A(x), op.A(x)), "two operators built the same way must agree"
    if op.linear:
        y = random_y(op, 2, torch.float32)
        assert torch.equal(op.A_adjoint(y), op.A_adjoint(y))


@pytest.mark.parametrize("case_id", IDS)
def test_rejects_wrong_shape_rank_and_dtype(case_id):
    op = build(case_id)
    x = random_x(op, 1, torch.float32)
    with pytest.raises(ValueError, match="x must have shape"):
        op.A(x[0])  # missing batch axis: wrong rank
    with pytest.raises(ValueError, match="x must have shape"):
        op.A(torch.cat([x, x], dim=-1))  # wrong trailing size
    with pytest.raises(TypeError, match="dtype"):
        op.A(x.double())
    with pytest.raises(TypeError, match="float32 or float64"):
        op.A(x.to(torch.int64))
    if op.linear:
        y = random_y(op, 1, torch.float32)
        with pytest.raises(ValueError, match="y must have shape"):
            op.A_adjoint(y[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case_id", IDS)
def test_cuda_matches_cpu(case_id):
    op = build(case_id)
    x = random_x(op, 2, torch.float32)
    cpu = op.A(x)
    gpu = op.to("cuda").A(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4 * float(cpu.abs().max()))
