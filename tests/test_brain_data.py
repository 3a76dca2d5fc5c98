"""The brain data source: nilearn's MNI152 templates turned into a seeded stream, offline, with disjoint splits."""

from __future__ import annotations

import socket

import pytest
import torch

from invsolve.datasets.brain import (
    HELDOUT_Z_MIN,
    PLANES,
    TRAIN_Z_MAX,
    BrainSlices,
    BrainTemplates,
    brain_slice,
    real_subject_paths,
    subject_slices,
)
from invsolve.datasets.training_data import build_training_data


@pytest.fixture(scope="module")
def templates():
    real = socket.socket

    def no_network(*args, **kwargs):
        raise AssertionError("the brain templates must load without any network access")

    socket.socket = no_network
    try:
        yield BrainTemplates()
    finally:
        socket.socket = real


def test_templates_are_the_mni152_maps(templates):
    assert tuple(templates.maps.shape) == (4, 189, 233, 197)  # (T1, GM, WM, CSF) x (Z, Y, X)
    assert float(templates.maps.min()) >= 0 and float(templates.maps.max()) <= 1


def test_the_splits_are_disjoint_by_construction(templates):
    train, heldout = templates.for_split("train")[0], templates.for_split("heldout")[0]
    assert not train[:, TRAIN_Z_MAX:].any() and train[:, :TRAIN_Z_MAX].any()
    assert not heldout[:, :HELDOUT_Z_MIN].any() and heldout[:, HELDOUT_Z_MIN:].any()
    assert TRAIN_Z_MAX < HELDOUT_Z_MIN
    streams = {split: BrainSlices(16, split=split, seed=0, templates=templates) for split in ("train", "tuning")}
    assert not torch.equal(streams["train"][0], streams["tuning"][0])


def test_the_stream_is_seeded_and_in_range(templates):
    data = BrainSlices(32, split="train", seed=3, templates=templates)
    a, b = data[7], data[7]
    assert torch.equal(a, b) and tuple(a.shape) == (1, 32, 32) and a.dtype == torch.float32
    assert not torch.equal(a, data[8])
    assert not torch.equal(a, BrainSlices(32, split="train", seed=4, templates=templates)[7])
    batch = torch.stack([data[i] for i in range(8)])
    assert torch.isfinite(batch).all() and float(batch.min()) >= 0 and float(batch.max()) <= 1
    assert float((batch > 0.05).float().mean()) > 0.1  # anatomy, not an empty field of view


@pytest.mark.parametrize("plane", PLANES)
def test_every_plane_and_contrast_gives_an_image(templates, plane):
    for contrast in ("t1", "t2", "pd", "random"):
        image = brain_slice(templates, torch.Generator().manual_seed(0), 16, plane=plane, contrast=contrast)
        assert image.max() == 1.0


def test_bad_arguments_are_refused(templates):
    with pytest.raises(ValueError, match="split"):
        BrainSlices(16, split="test", templates=templates)
    with pytest.raises(ValueError, match="plane"):
        brain_slice(templates, torch.Generator(), 16, plane="oblique")
    with pytest.raises(TypeError, match="generator"):
        brain_slice(templates, None, 16)


def test_training_source_and_real_subjects():
    assert isinstance(build_training_data("brain", 16, seed=0), BrainSlices)
    assert all(p.is_file() for p in real_subject_paths())


def test_real_subject_slices_are_the_usable_ones_of_both_brains():
    """Set (b): both real brains contribute, every kept slice holds anatomy, the set does not depend on the size."""
    small, large = subject_slices(16), subject_slices(64)
    assert small.shape[1:] == (1, 16, 16) and large.shape[1:] == (1, 64, 64) and len(small) == len(large)
    assert len(large) == 24 + 25  # the EPI's first frame (24 slices) and the T1 (25): all hold enough anatomy
    assert float(large.min()) >= 0 and float(large.max()) <= 1
    assert all(float((s > 0.1).float().mean()) > 0.1 for s in large)
    assert 0 < len(subject_slices(16, min_fraction=0.5)) < len(large)  # a stricter rule drops the caps
    with pytest.raises(ValueError, match="min_fraction"):
        subject_slices(16, min_fraction=1.5)


def test_a_study_runs_on_real_subjects(tmp_path):
    from invsolve.pipeline.items import list_items
    from invsolve.study import parse_config, run_study

    config = parse_config({"dataset": {"kind": "brain", "split": "subjects", "count": 2}, "operators": ["ct:views=8"],
                           "samplers": ["baseline"], "figures": False})
    assert [i.group for i in list_items(config.dataset)] == ["brain-subjects-0000", f"brain-subjects-{len(subject_slices(16)) - 1:04d}"]
    report = run_study(config, tmp_path / "study", progress=False)
    assert report.n_cases == 2 and all(r["psnr"] > 5 for r in report.rows)
    with pytest.raises(ValueError, match="seed"):
        parse_config({"dataset": {"kind": "brain", "split": "subjects", "seed": 1}, "operators": ["ct:views=8"],
                      "samplers": ["baseline"]})
    with pytest.raises(ValueError, match="exceeds"):
        list_items(parse_config({"dataset": {"kind": "brain", "split": "subjects", "count": 500},
                                 "operators": ["ct:views=8"], "samplers": ["baseline"]}).dataset)


def test_a_study_runs_on_held_out_brains(tmp_path):
    from invsolve.study import parse_config, run_study

    config = parse_config({"dataset": {"kind": "brain", "count": 2}, "operators": ["ct:views=8"],
                           "samplers": ["baseline"], "figures": False})
    report = run_study(config, tmp_path / "study", progress=False)
    assert report.n_cases == 2 and all(r["psnr"] > 5 for r in report.rows)
    with pytest.raises(ValueError, match="dataset.split"):
        parse_config({"dataset": {"kind": "brain", "split": "train"}, "operators": ["ct:views=8"],
                      "samplers": ["baseline"]})


def test_synthetic_fastmri_files_of_held_out_brains(tmp_path):
    from invsolve.datasets.fastmri_files import read_fastmri, write_synthetic_dataset

    (path,) = write_synthetic_dataset(tmp_path, n_volumes=1, n_slices=2, size=16, n_coils=2, seed=0, source="brain")
    volume = read_fastmri(path)
    assert path.name == "brain0000.h5" and volume.kspace.shape[:2] == (2, 2)
    with pytest.raises(ValueError, match="source"):
        write_synthetic_dataset(tmp_path, n_volumes=1, n_slices=1, size=16, n_coils=None, seed=0, source="mnist")


def test_volumes_are_drawn_the_same_way(templates):
    from invsolve.datasets.brain import brain_volume

    v = brain_volume(templates, torch.Generator().manual_seed(0), 16, 8, split="train")
    assert tuple(v.shape) == (1, 8, 16, 16) and float(v.max()) == 1.0 and float(v.min()) >= 0
    assert torch.equal(v, brain_volume(templates, torch.Generator().manual_seed(0), 16, 8, split="train"))
    held = brain_volume(templates, torch.Generator().manual_seed(1), 16, 8, spacing=3.0, split="heldout")
    assert float((held > 0.05).float().mean()) > 0.05
    with pytest.raises(ValueError, match="does not fit"):
        brain_volume(templates, torch.Generator(), 16, 64, spacing=2.0, split="heldout")
    top = brain_volume(templates, torch.Generator().manual_seed(0), 16, 8, split="train", centre_z=60.0)
    assert not torch.equal(top, v)  # moved, and the draws after the centre are those of the unmoved volume:
    after = torch.Generator().manual_seed(0)
    brain_volume(templates, after, 16, 8, split="train")
    placed = torch.Generator().manual_seed(0)
    brain_volume(templates, placed, 16, 8, split="train", centre_z=60.0)
    assert torch.equal(torch.rand(3, generator=after), torch.rand(3, generator=placed))
    with pytest.raises(ValueError, match="centre_z"):
        brain_volume(templates, torch.Generator(), 16, 8, split="train", centre_z=118.0)  # 100 mm slab past z = 120


def test_volume_slices_are_the_axial_slices_of_seeded_training_volumes(templates):
    from invsolve.datasets.brain import BrainVolumeSlices

    data = BrainVolumeSlices(16, n_volumes=3, depth=4, spacing=2.0, seed=1, templates=templates, cache_volumes=1)
    assert len(data) == 12 and tuple(data[5].shape) == (1, 16, 16)
    volume = data.volume(1)
    assert tuple(volume.shape) == (1, 4, 16, 16)
    assert torch.equal(data[5], volume[:, 1]) and torch.equal(data[0], data.volume(0)[:, 0])
    again = BrainVolumeSlices(16, n_volumes=3, depth=4, spacing=2.0, seed=1, templates=templates)
    assert torch.equal(again[5], data[5]) and not torch.equal(again[5], again[1])  # seeded, not one volume repeated
    assert len(data._cache) == 1  # the cache is bounded
    with pytest.raises(ValueError, match="depth \\* spacing"):
        BrainVolumeSlices(16, depth=200, spacing=1.0, templates=templates)
    with pytest.raises(IndexError):
        data[12]
    assert type(build_training_data("brain-volumes", 16, seed=0, n_volumes=2, depth=4)).__name__ == "BrainVolumeSlices"


def test_the_training_stream_is_pinned(templates):
    """The brain prior's recipe retrains from this stream: item 0 of the training split must not drift."""
    image = BrainSlices(64, split="train", seed=0, templates=templates)[0]
    assert float(image.sum()) == pytest.approx(755.9518, rel=1e-4)
