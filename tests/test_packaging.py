"""``operators/`` and ``datasets/`` import as ``invsolve.operators`` / ``invsolve.datasets`` only (SPEC section 2).

Checked for the install the tests run against (editable, from ``.ci/setup``) and
for a wheel built from the source tree and installed into a scratch directory.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib.util, json, sys
import invsolve, invsolve.operators, invsolve.datasets
from invsolve.operators import MatrixOperator
from invsolve.datasets import shepp_logan
top_ops = importlib.util.find_spec("operators")
top_data = importlib.util.find_spec("datasets")
print(json.dumps({
    "invsolve": invsolve.__file__,
    "operators": invsolve.operators.__file__,
    "datasets": invsolve.datasets.__file__,
    "top_operators": None if top_ops is None else top_ops.origin,
    "top_datasets": None if top_data is None else top_data.origin,
}))
"""


def run_check(cwd: Path, extra_path: Path | None = None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    out = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_not_ours(origin: str | None) -> None:
    """A top-level ``operators``/``datasets`` may exist (e.g. Hugging Face datasets) but must not be our folder."""
    if origin is not None:
        assert not Path(origin).resolve().is_relative_to(REPO), f"top-level import resolves into the repo: {origin}"


def test_installed_package_maps_folders_into_namespace(tmp_path):
    found = run_check(tmp_path)
    assert Path(found["operators"]).parent.name == "operators"
    assert Path(found["datasets"]).parent.name == "datasets"
    assert_not_ours(found["top_operators"])
    assert_not_ours(found["top_datasets"])


def test_editable_install_points_at_the_source_folders(tmp_path):
    # A source checkout also holds an ``invsolve.egg-info`` (no direct_url.json): look at every distribution.
    urls = [d.read_text("direct_url.json") for d in importlib.metadata.distributions(name="invsolve")]
    if not any(u and json.loads(u).get("dir_info", {}).get("editable") for u in urls):
        pytest.skip("invsolve is not installed in editable mode in this environment")
    found = run_check(tmp_path)
    assert Path(found["invsolve"]).resolve() == REPO / "invsolve" / "__init__.py"
    assert Path(found["operators"]).resolve() == REPO / "operators" / "__init__.py"
    assert Path(found["datasets"]).resolve() == REPO / "datasets" / "__init__.py"
    assert found["top_operators"] is None
    assert_not_ours(found["top_datasets"])


def test_built_wheel_installs_the_namespace_only(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "demo_out", ".*cache*"),
    )
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("invsolve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert "operators" not in top_level and "datasets" not in top_level, top_level
    assert "invsolve/operators/__init__.py" in names and "invsolve/datasets/__init__.py" in names
    # the shipped priors and their recipes travel with the wheel (package data)
    for stem in ("default_prior", "ellipsoid_slice_prior", "brain_prior", "brain_slice_prior"):
        assert f"invsolve/weights/{stem}.pt" in names and f"invsolve/weights/{stem}.json" in names, stem

    scratch = tmp_path / "scratch"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(scratch), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr
    found = run_check(tmp_path, extra_path=scratch)
    assert Path(found["invsolve"]).resolve() == scratch / "invsolve" / "__init__.py"
    assert Path(found["operators"]).resolve() == scratch / "invsolve" / "operators" / "__init__.py"
    assert Path(found["datasets"]).resolve() == scratch / "invsolve" / "datasets" / "__init__.py"
    assert found["top_operators"] is None
    assert_not_ours(found["top_datasets"])
