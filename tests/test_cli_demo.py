"""The main job (``invsolve demo``) end to end at a small size, and its one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from invsolve.cli import main


QUICK = ["--steps", "2", "--samples", "2", "--quiet"]


def test_demo_writes_figures_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    tasks = ("CT 8 views", "MRI 8x", "Inpainting 50%")
    assert main(["demo", "--out", str(out), "--tasks", ",".join(tasks), *QUICK]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    baselines = {"CT 8 views": "FBP", "MRI 8x": "zero-filled", "Inpainting 50%": "masked image"}
    assert [(r["task"], r["method"]) for r in rows] == [
        (t, m) for t in tasks for m in (baselines[t], "TV", "DPS", "PiGDM", "RED-Diff", "DDRM")
    ]
    assert all(math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in rows)
    assert all(r["psnr"] > 5 for r in rows if r["method"] not in ("DPS", "PiGDM", "RED-Diff", "DDRM"))  # 2 sampler steps: noise
    for r in rows:
        if r["method"] in ("DPS", "PiGDM", "RED-Diff", "DDRM"):
            assert r["nfe"] == 2 and r["n_samples"] == 2 and r["mean_std"] > 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ct-8-views.png", "inpainting-50.png", "metrics.json", "metrics.md", "mri-8x.png"]
    assert (out / "mri-8x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| MRI 8x | TV |" in (out / "metrics.md").read_text()
    assert "PSNR" in capsys.readouterr().out


def test_demo_on_a_held_out_brain_slice(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--data", "brain", "--tasks", "MRI 8x", "--samplers", "RED-Diff",
                 *QUICK]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["method"] for r in rows] == ["zero-filled", "TV", "RED-Diff"] and all(r["psnr"] > 5 for r in rows[:2])
    assert "Held-out brain slice" in (out / "metrics.md").read_text()


def test_demo_default_tasks_are_one_per_modality(tmp_path):
    from invsolve.demo import DEMO_TASK_NAMES

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--samplers", "DDRM", *QUICK]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert tuple(dict.fromkeys(r["task"] for r in rows)) == DEMO_TASK_NAMES == ("CT 8 views", "MRI 4x", "Inpainting 50%")


def test_demo_network_in_bfloat16(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--tasks", "Inpainting 50%", "--samplers", "DDRM", "--precision",
                 "bfloat16", *QUICK]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert all(math.isfinite(r["psnr"]) for r in rows)


def test_demo_sampler_subset(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--tasks", "Inpainting 50%", "--samplers", "DDRM", *QUICK]) == 0
    assert [r["method"] for r in json.loads((out / "metrics.json").read_text())] == ["masked image", "TV", "DDRM"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "CT 3 views"], "unknown task name"),
        (["--samplers", "NoSuchSampler"], "unknown sampler"),
        (["--samples", "1"], "n_samples must be an integer >= 2"),
        (["--steps", "0"], "steps must be a positive integer"),
    ],
)
def test_demo_rejects_bad_arguments(tmp_path, capsys, args, message):
    assert main(["demo", "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_demo_refuses_non_empty_output_without_overwrite(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(tmp_path), *QUICK]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_demo_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--device", "cuda", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_train_prior_subcommand_trains_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train-prior", "--out", str(out), "--source", "ellipses", "--resolution", "16", "--width", "32",
              "--batch-size", "2", "--checkpoint-every", "1", "--log-every", "1", "--quiet"]
    assert main(common + ["--steps", "1"]) == 0
    assert main(common + ["--steps", "2"]) == 0  # resumes from step 1
    printed = capsys.readouterr().out
    assert "trained to step 2" in printed
    assert (out / "prior.pt").is_file()


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "demo" in text and "train-prior" in text
