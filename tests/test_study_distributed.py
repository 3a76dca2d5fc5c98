"""The study under torchrun: 2 CPU processes (gloo on loopback) split the cases, each runs exactly once,
and the merged table equals the single-process one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from invsolve.study import parse_config, run_study

CONFIG = {
    "dataset": {"kind": "phantoms", "count": 3},
    "operators": ["mri:acceleration=4"],
    "samplers": ["baseline", {"name": "dps", "steps": 3, "samples": 2}],
    "figures": False,
}


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_torchrun_two_processes_shard_and_merge(tmp_path):
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "dist"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "invsolve", "study", str(config_path), "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = _rows(out)
    assert len(rows) == 6 and len({r["case_id"] for r in rows}) == 6
    assert {r["rank"] for r in rows} == {"0", "1"}
    events = [json.loads(line) for p in (out / "logs").glob("rank*.jsonl") for line in p.read_text().splitlines()]
    finished = [e["case_id"] for e in events if e["event"] == "finish"]
    assert sorted(finished) == sorted(r["case_id"] for r in rows)  # each case exactly once, across processes
    by_rank = {r: sum(e["rank"] == r for e in events if e["event"] == "finish") for r in (0, 1)}
    assert by_rank == {0: 4, 1: 2}  # measurement groups (slice x operator x seed) 0, 2 on rank 0; 1 on rank 1

    serial = tmp_path / "serial"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the torchrun processes: the thread count changes float summation order
    try:
        run_study(parse_config(CONFIG), serial, progress=False)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(rows, _rows(serial)):
        assert a["case_id"] == b["case_id"]
        # same seeds, same data: equal up to float32 rounding (1e-6 relative leaves room for BLAS builds
        # that pick different kernels in a child process)
        assert float(a["psnr"]) == pytest.approx(float(b["psnr"]), rel=1e-6)
        assert float(a["ssim"]) == pytest.approx(float(b["ssim"]), rel=1e-6)
