"""The main job (``invsolve demo``) end to end at a small size, and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from invsolve.cli import main


def test_demo_writes_figure_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "48", "--quiet"]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert {(r["task"], r["method"]) for r in rows} == {
        (t, m)
        for t, ms in {"CT 8 views": ("FBP", "TV"), "CT 16 views": ("FBP", "TV"),
                      "MRI 4x": ("zero-filled", "TV"), "MRI 8x": ("zero-filled", "TV")}.items()
        for m in ms
    }
    assert all(r["psnr"] > 5 and 0 < r["ssim"] <= 1 for r in rows)
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| CT 16 views | TV |" in (out / "metrics.md").read_text()
    assert "PSNR" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["demo.png", "metrics.json", "metrics.md"]


def test_demo_refuses_non_empty_output_without_overwrite(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(tmp_path), "--size", "48", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_demo_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--device", "cuda", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_demo_rejects_tiny_size(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--size", "8", "--quiet"]) == 2
    assert "size must be an integer >= 32" in capsys.readouterr().err


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
