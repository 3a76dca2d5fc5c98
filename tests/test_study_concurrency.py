"""Two runs of one study on one folder compute each case once; a crashed run's locks are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from invsolve.study import enumerate_cases, parse_config, run_study

CONFIG = """\
dataset: {kind: phantoms, count: 3, size: 32}
operators: ["ct:views=8"]
samplers: [baseline, {name: tv, iterations: 2000}]
figures: false
"""


def _starts(out) -> list[str]:
    events = []
    for log in (out / "logs").glob("*.jsonl"):
        events += [json.loads(line) for line in log.read_text().splitlines()]
    return [e["case_id"] for e in events if e["event"] == "start"]


def test_concurrent_runs_compute_each_case_once(tmp_path):
    config, out = tmp_path / "study.yaml", tmp_path / "out"
    config.write_text(CONFIG)
    command = [sys.executable, "-m", "invsolve", "study", str(config), "--out", str(out), "--quiet"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ran = []
    for run in runs:
        summary, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        ran.append(int(summary.split(" run here")[0].rsplit("(", 1)[1]))
    assert sum(ran) == 6, ran  # together they ran every case once (each its share when they overlap)
    starts = _starts(out)
    assert len(starts) == len(set(starts)) == 6, f"cases computed more than once: {starts}"
    assert not list((out / "cases").glob("*.lock"))
    assert len((out / "results.csv").read_text().strip().splitlines()) == 1 + 6


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    config = parse_config({"dataset": {"kind": "phantoms", "count": 1, "size": 32}, "operators": ["ct:views=8"],
                           "samplers": ["baseline"], "figures": False})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (case,) = enumerate_cases(config)
    (tmp_path / "cases").mkdir()
    lock = tmp_path / "cases" / f"{case.case_id}.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "time": time.time()}))
    report = run_study(config, tmp_path, progress=False, overwrite=True)
    assert report.ran == 1 and not lock.exists()
    assert os.path.exists(tmp_path / "cases" / f"{case.case_id}.json")
