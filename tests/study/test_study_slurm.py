"""``gliomaseg study`` and ``predict`` with ``--launcher submitit`` against a real one-node SLURM cluster on localhost.

The cluster comes from ``scripts/slurm-local.sh`` (Debian's slurm-wlm and munge, as root); where
its daemons cannot start, the test skips with their own error message.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gliomaseg.cli import main

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm-local.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Start a private cluster (own state folder and ports) for this module; stop it afterwards."""
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "srun", "munged") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} not on PATH): apt-get install slurm-wlm munge")
    state = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ,
        "SLURM_LOCAL_DIR": str(state),
        "SLURM_LOCAL_CTLD_PORT": str(_free_port()),
        "SLURM_LOCAL_SLURMD_PORT": str(_free_port()),
    }
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as err:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
        pytest.skip(f"SLURM daemons did not start within 90 s: {err.stderr}")
    if started.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
        pytest.skip(f"SLURM daemons could not start here: {started.stderr.strip() or started.stdout.strip()}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(state / "slurm.conf"))
        yield state
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def _task_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "slurm").iterdir() if p.is_dir() and "_" in p.name)


def test_submitit_job_array_on_local_slurm(slurm_cluster, tmp_path, phantoms):
    study = {
        "name": "onslurm",
        "data": str(phantoms),
        "folds": 2,
        "split": {"test_fraction": 0.15, "seed": 0},
        "base": {"preset": "demo", "features": 4, "epochs": 1, "size": 64},
        # Two configurations: one process, and Lightning DDP over 2 processes (gloo on CPU) inside the
        # job, which asks for 2 tasks (a second job array: an array shares one resource request).
        "axes": {"processes": {"single": {}, "ddp2": {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}}},
        # `setup`: lines run in the job before Python starts (here: one thread per allocated CPU).
        "slurm": {
            "partition": "debug",
            "cpus_per_task": 1,
            "mem_gb": 2,
            "timeout_min": 10,
            "setup": ["export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK"],
        },
    }
    config = tmp_path / "onslurm.yaml"
    config.write_text(yaml.safe_dump(study, sort_keys=False))
    # Every wait is bounded: submitit cannot see a task that died without accounting (slurmdbd).
    assert main(["study", str(config), "--launcher", "submitit", "--timeout", "6"]) == 0
    folder = tmp_path / "onslurm"
    # One array task per run, each with its own submitit log folder <array>_<task>; one array per device count.
    assert len(_task_folders(folder)) == 4 and len({t.split("_")[0] for t in _task_folders(folder)}) == 2
    for run in ("single__fold0", "single__fold1", "ddp2__fold0", "ddp2__fold1"):
        result = json.loads((folder / "runs" / run / "result.json").read_text())
        assert result["run"] == run and result["patients"]
    ddp_task = next(p for p in (folder / "slurm").iterdir() if (p / f"{p.name}_1_log.out").is_file())
    assert "All distributed processes registered. Starting with 2 processes" in "".join(
        path.read_text() for path in ddp_task.glob("*_log.*")
    )
    table = pd.read_csv(folder / "results.csv")
    assert sorted(table["config"]) == ["ddp2", "single"]
    splits = json.loads((folder / "splits.json").read_text())
    n_non_test = sum(len(fold["val"]) for fold in splits["folds"])
    assert (table["dice_n"] == n_non_test).all() and table["dice_mean"].between(0, 1).all()
    # A second submission finds nothing to do.
    assert main(["study", str(config), "--launcher", "submitit", "--timeout", "1"]) == 0
    assert len(_task_folders(folder)) == 4


def _queue() -> str:
    """The jobs squeue lists (one line each), or an error."""
    listed = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30)
    return listed.stdout if listed.returncode == 0 else f"squeue failed: {listed.stderr}"


def test_predict_cohort_as_a_job_array_equals_one_run(slurm_cluster, tmp_path, phantoms, model_file):
    """``predict --launcher submitit --jobs 2``: one array task per shard; the last merges cases.csv."""
    model, out, whole = str(model_file()), tmp_path / "slurm_pred", tmp_path / "whole"
    table = "cases.csv"  # predict's per-case table
    argv = ["predict", "--model", model, str(phantoms), "--no-overlays"]
    slurm = ["--slurm", "partition=debug", "--slurm", "cpus_per_task=1", "--slurm", "mem_gb=2"]
    assert main([*argv, "--out", str(out), "--launcher", "submitit", "--jobs", "2", *slurm]) == 0
    assert main([*argv, "--out", str(whole)]) == 0
    deadline = time.monotonic() + 360
    # The last task merges the table; both tasks must also have left the queue before the cluster is
    # stopped, which would otherwise leave the step of a task still ending behind.
    while not (out / table).exists() or _queue():
        assert time.monotonic() < deadline, (
            f"no merged cases.csv after 6 min; logs: {sorted((out / 'slurm').rglob('*'))}"
        )
        time.sleep(2)
    assert len(_task_folders(out)) == 2
    stem = table.removesuffix(".csv")
    assert sorted(p.name for p in out.glob(f"{stem}.shard-*")) == [
        f"{stem}.shard-1-of-2.csv",
        f"{stem}.shard-2-of-2.csv",
    ]
    assert (out / table).read_text().replace(str(out), "OUT") == (whole / table).read_text().replace(str(whole), "OUT")
    masks = sorted(p.relative_to(whole) for p in whole.rglob("*_mask.tif"))
    assert masks and masks == sorted(p.relative_to(out) for p in out.rglob("*_mask.tif"))
    assert all((whole / m).read_bytes() == (out / m).read_bytes() for m in masks)
