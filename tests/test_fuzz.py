"""A fuzz corpus of our own: seeded mutations of valid specs, configs, files and checkpoints.

Every mutated input must either work or end in one clear error (``ValueError`` / ``TypeError`` /
``FileNotFoundError`` / ``IndexError`` from the library, exit code 2 with one line from the command line): never
another exception, a traceback, a crash, or an output left behind. The default run draws a small corpus; the
``slow`` part draws ten times more.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from invsolve.cli import main
from invsolve.pipeline import parse_operator_spec
from invsolve.study import parse_config

CLEAR_ERRORS = (ValueError, TypeError, FileNotFoundError, IndexError)
VALID_SPECS = ["mri:acceleration=4", "mri:acceleration=8,center_fraction=0.08,mask=random", "ct:views=8",
               "ct:views=60,arc=90", "inpainting:fraction=0.5", "blur:sigma=1.5", "sr:factor=4",
               "mri:acceleration=4,coils=8,noise=0.001"]
ODD_VALUES = ["", "0", "-1", "1e400", "-1e-300", "nan", "inf", "abc", "1,2", "=", "4.0.1", "\u00e9", " ", "true",
              "None", "[1]", "0x10", "1_000"]
CONFIG = {"dataset": {"kind": "phantoms", "count": 1}, "operators": ["ct:views=8"], "samplers": ["baseline"],
          "figures": False}
ODD_OBJECTS = [None, True, -1, 0, 1e400, float("nan"), "x", "", [], {}, [None], {"kind": None}, ["ct:views=8"] * 2,
               {"name": "dps", "steps": -3}, {"name": "tv"}, 2**70, "ct:views=8", ["nope"], {"kind": "brain",
                                                                                            "split": "train"}]


def _mutate_spec(rng: random.Random, spec: str) -> str:
    kind, _, params = spec.partition(":")
    pairs = [p.split("=", 1) for p in params.split(",") if p]
    move = rng.randrange(6)
    if move == 0 and pairs:  # an odd value
        rng.choice(pairs)[1] = rng.choice(ODD_VALUES)
    elif move == 1 and pairs:  # a repeated key
        pairs.append(list(rng.choice(pairs)))
    elif move == 2:  # an unknown key
        pairs.append(["".join(rng.choices(string.ascii_lowercase, k=5)), rng.choice(ODD_VALUES)])
    elif move == 3:  # another kind
        kind = rng.choice(["mri", "ct", "MRI", "", "pet", "inpainting", "sr"])
    text = f"{kind}:{','.join('='.join(p) for p in pairs)}"
    if move == 4:  # a character dropped
        i = rng.randrange(len(text))
        text = text[:i] + text[i + 1:]
    elif move == 5:  # a character inserted
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(":=,;. x9-") + text[i:]
    return text


def _mutate_config(rng: random.Random) -> dict:
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in CONFIG.items()}
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(["top", "dataset", "drop"])
        if where == "top":
            config[rng.choice(["operators", "samplers", "priors", "seeds", "figures", "device", "name", "bogus"])] = \
                rng.choice(ODD_OBJECTS)
        elif where == "dataset" and isinstance(config.get("dataset"), dict):
            config["dataset"][rng.choice(["kind", "count", "seed", "split", "path", "slices", "max_items",
                                          "resize"])] = rng.choice(ODD_OBJECTS)
        else:
            config.pop(rng.choice(list(config)), None)
    return config


def _specs(n: int, seed: int):
    rng = random.Random(seed)
    return [_mutate_spec(rng, rng.choice(VALID_SPECS)) for _ in range(n)]


def _configs(n: int, seed: int):
    rng = random.Random(seed)
    return [_mutate_config(rng) for _ in range(n)]


def _check_spec(text: str) -> None:
    try:
        parse_operator_spec(text)
    except CLEAR_ERRORS as err:
        assert str(err) and "\n" not in str(err), (text, err)


def _check_config(config: dict) -> None:
    try:
        parse_config(config)
    except CLEAR_ERRORS as err:
        assert str(err) and "\n" not in str(err), (config, err)


@pytest.mark.parametrize("text", _specs(150, seed=0))
def test_mutated_operator_specs(text):
    _check_spec(text)


@pytest.mark.parametrize("index, config", list(enumerate(_configs(120, seed=1))))
def test_mutated_study_configs(index, config):
    _check_config(config)


@pytest.mark.slow
def test_many_mutated_specs_and_configs():
    for text in _specs(3000, seed=10):
        _check_spec(text)
    for config in _configs(2000, seed=11):
        _check_config(config)


# -- files -----------------------------------------------------------------------------------------
def _valid_files(folder: Path) -> dict[str, Path]:
    import nibabel as nib

    from invsolve.datasets.fastmri_files import write_synthetic_dataset

    folder.mkdir(parents=True, exist_ok=True)
    volume = np.random.default_rng(0).random((24, 20, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "v.nii")
    (h5,) = write_synthetic_dataset(folder / "k", n_volumes=1, n_slices=2, size=64, n_coils=2, seed=0)
    return {"nii": folder / "v.nii", "h5": h5}


def _corrupt(rng: random.Random, data: bytes) -> bytes:
    move = rng.randrange(3)
    if move == 0:  # truncated
        return data[:rng.randrange(len(data))]
    buf = bytearray(data)
    if move == 1:  # bytes overwritten in the header region
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(min(len(buf), 600))] = rng.randrange(256)
    else:  # a block of the body overwritten
        start = rng.randrange(len(buf))
        buf[start:start + 512] = bytes(rng.randrange(256) for _ in range(min(512, len(buf) - start)))
    return bytes(buf)


def _check_corrupted_files(tmp_path: Path, capsys, n: int, seed: int) -> None:
    rng = random.Random(seed)
    files = _valid_files(tmp_path / "valid")
    for i in range(n):
        kind = rng.choice(sorted(files))
        source = tmp_path / f"bad{i}.{kind}"
        source.write_bytes(_corrupt(rng, files[kind].read_bytes()))
        out = tmp_path / f"out{i}.h5"
        operator = "mri:acceleration=4" if kind == "h5" else "ct:views=8"
        code = main(["reconstruct", str(source), "--out", str(out), "--operator", operator, "--sampler", "baseline",
                     "--resize", "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code in (0, 2), (source, err)
        if code == 2:
            assert len(err.splitlines()) == 1 and not out.exists(), (source, err)


def test_corrupted_files(tmp_path, capsys):
    _check_corrupted_files(tmp_path, capsys, 12, seed=2)


@pytest.mark.slow
def test_many_corrupted_files(tmp_path, capsys):
    _check_corrupted_files(tmp_path, capsys, 200, seed=20)


# -- checkpoints -----------------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["truncate", "no-config", "nan", "huge-width", "wrong-type", "extra-key"])
def test_hostile_prior_files(tmp_path, change):
    """A prior file changed in one way loads with a clear error (or, for an extra key, loads)."""
    from invsolve.priors.default import shipped_prior_path
    from invsolve.priors.edm import EDMPrior

    source = shipped_prior_path("default")
    path = tmp_path / "p.pt"
    if change == "truncate":
        path.write_bytes(source.read_bytes()[:5000])
    else:
        state = torch.load(source, weights_only=True)
        if change == "no-config":
            state.pop("config")
        elif change == "nan":
            key = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
            state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("nan"))
        elif change == "huge-width":
            state["config"]["width"] = 2**20
        elif change == "wrong-type":
            state["config"]["width"] = "wide"
        else:
            state["note"] = "harmless"
        torch.save(state, path)
    if change == "extra-key":
        EDMPrior.from_checkpoint(path)
        return
    with pytest.raises(CLEAR_ERRORS) as err:
        EDMPrior.from_checkpoint(path)
    assert str(err.value) and "\n" not in str(err.value)
