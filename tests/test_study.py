"""The study runner: config checks, outputs, resume after an interruption, overwrite rules, resolution rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from invsolve.cli import main
from invsolve.study import enumerate_cases, load_config, parse_config, run_study, shard

SMALL = {
    "name": "small",
    "dataset": {"kind": "phantoms", "count": 2},
    "operators": ["mri:acceleration=4"],
    "samplers": ["baseline", {"name": "dps", "steps": 3, "samples": 2}],
    "seeds": [0],
    "figures": False,
}


def _write(tmp_path: Path, config: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def _finished(out: Path) -> list[str]:
    events = [json.loads(line) for p in sorted((out / "logs").glob("rank*.jsonl")) for line in p.read_text().splitlines()]
    return [e["case_id"] for e in events if e["event"] == "finish"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"samplers": ["dpss"]}, "unknown sampler 'dpss'"),
        ({"operators": ["mrii:acceleration=4"]}, "unknown operator 'mrii'"),
        ({"operators": ["mri:acceleraton=4"]}, r"unknown parameter\(s\) \['acceleraton'\]"),
        ({"operators": ["mri"]}, "needs acceleration"),
        ({"operators": ["mri:acceleration=0.5"]}, "acceleration must be >= 1"),
        ({"samplers": [{"name": "dps", "zetta": 1}]}, r"unknown setting\(s\) \['zetta'\]"),
        ({"samplers": [{"name": "dps", "steps": 0}]}, "steps must be a positive integer"),
        ({"dataset": {"kind": "mnist"}}, "unknown dataset kind 'mnist'"),
        ({"dataset": {"kind": "fastmri"}}, "needs a 'path'"),
        ({"dataset": {"kind": "phantoms", "path": "x"}}, r"takes no \['path'\]"),
        ({"seeds": [0, 0]}, "seeds must be distinct"),
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"dataset": {"kind": "fastmri", "path": "x"}, "operators": ["ct:views=8"]}, "every operator must be 'mri'"),
        ({"dataset": {"kind": "nifti", "path": "x", "resize": "yes"}}, "resize must be 'none' or 'prior'"),
        ({"operators": ["mri:acceleration=4,mask=active"]}, "needs the 'ads' sampler"),
        ({"samplers": ["ads"]}, "needs an mri operator with mask=active"),
        ({"samplers": ["mbir3d"]}, "mbir3d reconstructs whole volumes"),
        ({"operators": ["mri:acceleration=4,mask=spiral"]}, "mask must be 'equispaced' or 'random'"),
    ],
)
def test_config_errors_name_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        parse_config({**SMALL, **change})


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)


def test_cases_are_deterministic_and_shards_partition_them():
    config = parse_config({**SMALL, "seeds": [0, 1]})
    cases = enumerate_cases(config)
    assert len(cases) == 2 * 1 * 2 * 2
    assert [c.case_id for c in cases] == [c.case_id for c in enumerate_cases(parse_config({**SMALL, "seeds": [0, 1]}))]
    assert len({c.case_id for c in cases}) == len(cases)
    parts = [shard(cases, r, 3) for r in range(3)]
    assert sorted(c.case_id for p in parts for c in p) == sorted(c.case_id for c in cases)
    # the measurement noise is shared by every method of a slice; the sampler seed is not
    a, b = cases[0], cases[1]
    assert a.noise_seed == b.noise_seed and a.sampler_seed != b.sampler_seed


def test_study_outputs_and_records(tmp_path):
    out = tmp_path / "out"
    report = run_study(parse_config({**SMALL, "figures": True}), out, progress=False)
    assert report.n_cases == report.ran == 4 and report.skipped == 0
    rows = _rows(out)
    assert len(rows) == 4 and len({r["case_id"] for r in rows}) == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_cases"] == 4 and manifest["versions"]["torch"] and manifest["fingerprint"]
    record = json.loads((out / "cases" / f"{rows[1]['case_id']}.json").read_text())
    for key in ("mask_seed", "noise_seed", "sampler_seed", "psnr", "ssim", "nmse", "nfe"):
        assert key in record
    dps = [r for r in rows if r["method"].startswith("dps")]
    base = [r for r in rows if r["method"] == "baseline"]
    assert all(float(r["nfe"]) == 3 for r in dps) and all(float(r["mean_std"]) > 0 for r in dps)
    assert all(float(r["mean_std"]) == 0 for r in base)
    with np.load(out / "cases" / f"{rows[1]['case_id']}.npz") as arrays:
        assert set(arrays.files) == {"mean", "std", "truth"} and arrays["mean"].shape == (64, 64)
    assert (out / "summary.md").read_text().count("| MRI 4x") == 2
    assert (out / "figures" / "summary.png").is_file() and len(list((out / "figures").glob("*.png"))) == 5
    assert not list(out.rglob("*.tmp*")), "temporary files left behind"


def test_resume_after_interruption_runs_each_case_once(tmp_path):
    out, config = tmp_path / "out", parse_config(SMALL)
    seen = []

    def interrupt_on_third(case):
        seen.append(case.case_id)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(config, out, progress=False, on_case=interrupt_on_third)
    assert len(list((out / "cases").glob("*.json"))) == 2
    assert not (out / "results.csv").exists()
    report = run_study(config, out, progress=False)
    assert (report.ran, report.skipped) == (2, 2)
    rows = _rows(out)
    assert [r["case_id"] for r in rows] == [c.case_id for c in enumerate_cases(config)]
    finished = _finished(out)
    assert sorted(finished) == sorted(r["case_id"] for r in rows)  # every case finished exactly once
    again = run_study(config, out, progress=False)  # a third run has nothing to do and loses nothing
    assert (again.ran, again.skipped) == (0, 4) and _rows(out) == rows


def test_a_damaged_study_folder_is_repaired_on_resume(tmp_path):
    """A truncated case record, a missing arrays file and a truncated manifest: the rerun recomputes those cases,
    names what it repaired in the log, and keeps every intact case."""
    out, config = tmp_path / "out", parse_config(SMALL)
    run_study(config, out, progress=False)
    ids = [c.case_id for c in enumerate_cases(config)]
    record = out / "cases" / f"{ids[0]}.json"
    record.write_text(record.read_text()[:40])
    (out / "cases" / f"{ids[1]}.npz").unlink()
    (out / "manifest.json").write_text('{"fingerprint": "ab')
    report = run_study(config, out, progress=False)
    assert (report.ran, report.skipped) == (2, 2)
    assert [r["case_id"] for r in _rows(out)] == ids
    repairs = [json.loads(line) for line in (out / "logs" / "rank0.jsonl").read_text().splitlines()
               if '"repair"' in line]
    assert sorted(r["case_id"] for r in repairs) == sorted(ids[:2])
    assert any("missing" in r["problem"] for r in repairs) and any("JSONDecodeError" in r["problem"] for r in repairs)
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == config.fingerprint
    (out / "manifest.json").write_text("[")
    (out / "config.yaml").write_text("config: {}\n")
    with pytest.raises(ValueError, match="manifest.json is damaged"):
        run_study(config, out, progress=False)


def test_output_folder_rules(tmp_path):
    out = tmp_path / "out"
    run_study(parse_config(SMALL), out, progress=False)
    other = parse_config({**SMALL, "seeds": [1]})
    with pytest.raises(FileExistsError, match="different config.*--overwrite"):
        run_study(other, out, progress=False)
    report = run_study(other, out, overwrite=True, progress=False)
    assert report.ran == 4 and {r["seed"] for r in _rows(out)} == {"1"}
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a study folder"):
        run_study(parse_config(SMALL), stranger, progress=False)


def test_resolution_mismatch_is_explicit(tmp_path):
    from skimage.io import imsave

    images = tmp_path / "images"
    images.mkdir()
    pixels = np.zeros((80, 100), dtype=np.uint8)
    pixels[20:60, 30:70] = 200
    imsave(images / "box.png", pixels, check_contrast=False)
    config = {**SMALL, "dataset": {"kind": "images", "path": str(images)}, "samplers": ["baseline"]}
    with pytest.raises(ValueError, match=r"80x100 but the prior works on 64x64.*resize: prior"):
        run_study(parse_config(config), tmp_path / "a", progress=False)
    config["dataset"]["resize"] = "prior"
    run_study(parse_config(config), tmp_path / "b", progress=False)
    record = json.loads(next((tmp_path / "b" / "cases").glob("*.json")).read_text())
    assert record["original_shape"] == [80, 100]


def test_cli_study_errors_are_one_line(tmp_path, capsys):
    path = _write(tmp_path, {**SMALL, "samplers": ["nope"]})
    assert main(["study", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown sampler 'nope'" in err


def test_cli_study_runs_and_overrides_steps(tmp_path, capsys):
    path = _write(tmp_path, {**SMALL, "samplers": [{"name": "dps", "steps": 50, "samples": 2}]})
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--steps", "2", "--quiet"]) == 0
    assert "| MRI 4x (equispaced) | default | dps (2 steps" in capsys.readouterr().out


def test_nifti_study_writes_volumes_with_the_input_header(tmp_path):
    import nibabel as nib
    from nibabel.testing import data_path

    source = Path(data_path) / "anatomical.nii"
    config = {**SMALL, "dataset": {"kind": "nifti", "path": str(source), "resize": "prior"},
              "operators": ["inpainting:fraction=0.5"], "samplers": ["baseline", "tv"]}
    out = tmp_path / "out"
    run_study(parse_config(config), out, progress=False)
    assert len(_rows(out)) == 2 * 25
    volumes = sorted((out / "volumes").rglob("*.nii.gz"))
    assert len(volumes) == 4  # mean and std for each method
    original = nib.load(source)
    for path in volumes:
        image = nib.load(path)
        assert image.shape == original.shape and np.array_equal(image.affine, original.affine)
        assert np.array_equal(image.header["pixdim"], original.header["pixdim"])
    with open(out / "volumes.csv") as f:
        assert [r["slices"] for r in csv.DictReader(f)] == ["25", "25"]
