"""The run layer: one problem catalogue, one table of tuned settings, one entry point, and the import rules
(the library never reads its front ends; operators know no measurement; no sampler name in pipeline / study)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from invsolve.pipeline import KINDS, TUNED, MethodSpec, SetupCache, parse_operator_spec, run_method, tuned_settings
from invsolve.pipeline.problems import simulated_problem, volume_problem
from invsolve.samplers import declaration, declarations
from invsolve.tasks import TASKS, standard_tasks

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"mri": ["mri:acceleration=4", "mri:acceleration=4,coils=2", "mri:acceleration=8,mask=active"],
            "ct": ["ct:views=8", "ct:views=30,arc=90"], "inpainting": ["inpainting:fraction=0.5"],
            "blur": ["blur:sigma=1.5"], "sr": ["sr:factor=4"]}


def test_every_kind_is_registered_once_and_has_examples():
    assert set(KINDS) == set(EXAMPLES)


@pytest.mark.parametrize("text", [t for texts in EXAMPLES.values() for t in texts])
def test_every_kind_builds_a_measurable_image_problem(text):
    spec = parse_operator_spec(text)
    truth = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    problem = simulated_problem(truth, spec, mask_seed=0, noise_seed=1)
    assert problem.operator_kind == spec.kind and problem.tv_weight > 0 and problem.info["sigma_y"] > 0
    assert problem.is_active == spec.is_active
    if not problem.is_active:
        assert problem.baseline(problem.measurement.y).shape == truth.shape
        assert problem.show_measurement(problem.measurement.y).dim() == 2


@pytest.mark.parametrize("text", ["ct:views=8", "mri:acceleration=4", "mri:acceleration=4,mask=poisson-disc"])
def test_volume_kinds_build_volume_problems(text):
    truth = torch.rand(1, 1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    problem = volume_problem(truth, parse_operator_spec(text), mask_seed=0, noise_seed=1)
    assert problem.is_volume and problem.baseline(problem.measurement.y).shape == truth.shape
    with pytest.raises(ValueError, match="3D reconstruction supports the operators"):
        volume_problem(truth, parse_operator_spec("blur:sigma=1"), mask_seed=0, noise_seed=1)


def test_named_tasks_are_aliases_with_the_tuned_tv_weights():
    setups = standard_tasks(16, 0, names=tuple(TASKS))
    assert [s.label for s in setups] == list(TASKS)
    weights = {s.label: s.tv_weight for s in setups}
    assert weights == pytest.approx({"CT 8 views": 0.1, "CT 16 views": 0.2, "MRI 4x": 0.01, "MRI 8x": 0.01,
                                     "Inpainting 50%": 0.02, "Gaussian deblur": 0.002, "SR 4x": 0.002})
    assert setups[0].slug == "ct-8-views"


def test_the_setup_cache_shares_operators_and_is_owned_by_the_caller():
    cache, spec = SetupCache(capacity=2), parse_operator_spec("ct:views=8")
    assert cache.image(spec, 16, 0) is cache.image(spec, 16, 0)
    assert SetupCache().image(spec, 16, 0) is not cache.image(spec, 16, 0)


def test_tuned_settings_match_exactly_fall_back_and_never_fail():
    exact = tuned_settings("dps", "ct", "default", 100)
    assert exact.settings == {"zeta": 0.05} and exact.source.startswith("tuned for this kind and prior")
    assert tuned_settings("dps", "ct", "default", 1000).settings == {"zeta": 0.02}
    other_prior = tuned_settings("red-diff", "mri", "never-tuned-prior", 100)
    assert other_prior.settings == {"lr": 0.02, "lam": 0.1} and "fallback" in other_prior.source
    never = tuned_settings("red-diff", "a-new-kind", "default", 100)
    assert never.settings == {} and "never tuned" in never.source
    assert "mbir3d" in tuned_settings("mbir3d", "ct", "default", 50).source


@pytest.mark.parametrize("entry", TUNED, ids=lambda e: f"{e.sampler}-{e.kind}")
def test_every_tuned_entry_names_a_declared_sampler_and_its_settings(entry):
    if entry.sampler == "tv":
        assert set(entry.settings) == {"lam"} and entry.prior != "default"
    else:
        declaration(entry.sampler).check_settings(entry.settings)
    assert entry.kind in KINDS or entry.kind == "*"


def test_the_entry_point_records_where_its_settings_came_from():
    truth = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    problem = simulated_problem(truth, parse_operator_spec("inpainting:fraction=0.5"), mask_seed=0, noise_seed=1)
    from invsolve.priors import GaussianPrior

    prior = GaussianPrior(torch.full((256,), 0.5), torch.tensor(0.05), shape=(1, 16, 16))
    result = run_method(MethodSpec("red-diff", 3, 2), problem, prior, generator=torch.Generator().manual_seed(0))
    assert result.settings == {"lr": 0.02, "lam": 0.03} and "inpainting" in result.settings_source
    assert result.sample.shape == truth.shape
    overridden = run_method(MethodSpec("red-diff", 3, 2, (("lam", 0.5),)), problem, prior,
                            generator=torch.Generator().manual_seed(0), prior_name="mine")
    assert overridden.settings["lam"] == 0.5 and "fallback" in overridden.settings_source
    with pytest.raises(ValueError, match="active acquisition"):
        active = simulated_problem(truth, parse_operator_spec("mri:acceleration=4,mask=active"), mask_seed=0,
                                   noise_seed=1)
        run_method(MethodSpec("tv"), active, prior, generator=torch.Generator().manual_seed(0))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("folder, forbidden", [
    ("invsolve/pipeline", {"invsolve.demo", "invsolve.cli", "invsolve.demo_figures"}),
    ("invsolve/study", {"invsolve.demo", "invsolve.cli", "invsolve.demo_figures"}),
    ("invsolve/samplers", {"invsolve.demo", "invsolve.cli", "invsolve.pipeline", "invsolve.study"}),
    ("operators", {"invsolve.demo", "invsolve.cli", "invsolve.measurement", "invsolve.noise"}),
    ("experiments", {"invsolve.demo", "invsolve.cli"}),
])
def test_import_rules(folder, forbidden):
    bad = {f"{p.relative_to(ROOT)} imports {m}" for p in (ROOT / folder).rglob("*.py") for m in _imports(p)
           if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not bad, sorted(bad)


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings}


@pytest.mark.parametrize("folder", ["invsolve/pipeline", "invsolve/study"])
def test_no_sampler_is_named_in_the_run_layer(folder):
    names = set(declarations())
    found = {f"{p.relative_to(ROOT)}: {s!r}" for p in (ROOT / folder).rglob("*.py") for s in _string_constants(p)
             if s in names and p.name != "tuned.py"}  # the tuned table is keyed by sampler name, by design
    assert not found, sorted(found)
