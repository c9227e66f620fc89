"""Where a study's runs execute: here one after another, a shard of them, or a SLURM job array via submitit.

Every launcher ends in :func:`gliomaseg.study.runner.run_one`, which writes one ``result.json``
per run atomically; collecting is separate (:func:`gliomaseg.study.report.collect_study`), so
any number of machines or jobs can share the study folder.

SLURM: :func:`submit_slurm` submits one array task per pending run through ``submitit``
(partition, GPUs, time and memory from the study file's ``slurm:`` section) and
:func:`wait_for_runs` polls the runs' result files with a deadline. Without slurmdbd accounting
``sacct`` (and so submitit's job state) knows nothing about a task that died, so the wait also
asks ``squeue`` which tasks are still queued and reports a task that left the queue without a
result, with its log file.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gliomaseg.errors import GliomasegError
from gliomaseg.study.folder import Study
from gliomaseg.study.grid import RunSpec

__all__ = ["check_slurm", "parse_shard", "run_local", "shard_runs", "submit_array", "submit_slurm", "wait_for_runs"]

log = logging.getLogger(__name__)

#: ``slurm:`` keys that submitit's AutoExecutor takes as they are; any other key gets the ``slurm_`` prefix
#: (``partition`` -> ``slurm_partition``, ``array_parallelism``, ``setup``, ``additional_parameters``...).
_GENERIC = {
    "timeout_min",
    "mem_gb",
    "nodes",
    "cpus_per_task",
    "gpus_per_node",
    "tasks_per_node",
    "name",
    "stderr_to_stdout",
}


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``.

    Raises:
        GliomasegError: anything else.
    """
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise GliomasegError(f"--shard {text!r}: write K/N, e.g. 1/4 for the first of 4 slices") from None
    if not 1 <= k <= n:
        raise GliomasegError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def shard_runs(runs: list[RunSpec], k: int, n: int) -> list[RunSpec]:
    """The K-th of N slices of the runs (every N-th run from the K-th: configurations spread over shards)."""
    return runs[k - 1 :: n]


def run_local(study: Study, runs: list[RunSpec], *, progress: bool = True) -> dict[str, list[str]]:
    """Run ``runs`` one after another in this process (finished ones skipped, interrupted ones resumed).

    Returns:
        ``{"done": [...], "skipped": [...]}``: runs finished now or before, and runs another process holds.

    Example:
        >>> study = prepare_study(load_study_config("studies/cpu-small.yaml", data="kaggle_3m"))  # doctest: +SKIP
        >>> run_local(study, shard_runs(study.config.runs(), 1, 2))  # the first of two shards  # doctest: +SKIP
    """
    from gliomaseg.study.runner import run_one

    out: dict[str, list[str]] = {"done": [], "skipped": []}
    for spec in tqdm(runs, desc=f"study {study.config.name}", unit="run", disable=not progress):
        result = run_one(study, spec, progress=False)
        out["skipped" if result is None else "done"].append(spec.name)
    return out


def check_slurm() -> None:
    """Refuse ``--launcher submitit`` on a machine without SLURM's commands, in one line.

    Raises:
        GliomasegError: ``sbatch`` or ``srun`` is not on PATH.
    """
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise GliomasegError(
            f"--launcher submitit needs SLURM, but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH here: run it on the cluster's login node, or use --launcher local"
        )


def _executor_parameters(study: Study, devices: int, num_nodes: int) -> dict[str, Any]:
    # Lightning's SLURM support runs one task per device (DDP): ask for as many tasks as devices.
    params: dict[str, Any] = {
        "name": f"gliomaseg-{study.config.name}",
        "timeout_min": 60,
        "tasks_per_node": devices,
        "nodes": num_nodes,
    }
    for key, value in study.config.slurm.items():
        params[key if key in _GENERIC or key.startswith("slurm_") else f"slurm_{key}"] = value
    return params


def submit_slurm(study: Study, runs: list[RunSpec]) -> dict[str, Any]:
    """Submit the unfinished ``runs`` as SLURM job arrays through submitit (one array task per run).

    One array per number of devices and nodes among the configurations (an array shares one
    resource request), each task with that many tasks per node for Lightning's DDP.

    Returns:
        Run name -> its submitit job, for the submitted runs; empty when all were finished.

    Raises:
        GliomasegError: submitit is not installed, a ``slurm:`` setting is unknown to it, or
            ``sbatch`` fails (its message included).

    Example:
        >>> jobs = submit_slurm(study, study.config.runs())  # doctest: +SKIP
        >>> wait_for_runs(study, study.config.runs(), jobs, timeout_s=3600)  # doctest: +SKIP
    """
    try:
        import submitit
    except ImportError as err:
        raise GliomasegError("--launcher submitit needs submitit: pip install 'gliomaseg[study]'") from err
    from gliomaseg.study.runner import execute_run

    groups: dict[tuple[int, int], list[RunSpec]] = {}
    for spec in runs:
        if not (study.run_dir(spec) / "result.json").is_file():
            cfg = study.train_config(spec)
            groups.setdefault((cfg.devices, cfg.num_nodes), []).append(spec)
    for devices, num_nodes in groups:
        # The settings are checked first, and without SLURM: submitit's "debug" executor checks the
        # names of every executor's settings, so a bad study file is refused on any machine.
        _executor(submitit, study, devices, num_nodes, cluster="debug")
    if groups:
        check_slurm()
    submitted: dict[str, Any] = {}
    for (devices, num_nodes), pending in groups.items():
        executor = _executor(submitit, study, devices, num_nodes, cluster="slurm")
        try:
            jobs = executor.map_array(execute_run, [str(study.folder)] * len(pending), [s.name for s in pending])
        except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
            raise GliomasegError(f"sbatch failed: {getattr(err, 'output', None) or err}") from err
        log.info("submitted %d runs as SLURM array %s", len(jobs), jobs[0].job_id.split("_")[0])
        submitted.update({spec.name: job for spec, job in zip(pending, jobs)})
    return submitted


def _executor(submitit: Any, study: Study, devices: int, num_nodes: int, *, cluster: str) -> Any:
    """A submitit executor with the study's settings (``cluster="debug"`` only checks them)."""
    try:
        executor = submitit.AutoExecutor(folder=study.folder / "slurm" / "%j", cluster=cluster)
    except RuntimeError as err:  # submitit's "Could not detect srun": SLURM is not usable here
        raise GliomasegError(f"--launcher submitit: SLURM is not usable here ({err}); use --launcher local") from err
    try:
        executor.update_parameters(**_executor_parameters(study, devices, num_nodes))
    except (ValueError, TypeError, NameError, AssertionError) as err:  # NameError: an unknown setting
        raise GliomasegError(f"slurm settings of {study.config.source or study.config.name}: {err}") from err
    return executor


def _queued(array_ids: set[str]) -> set[str] | None:
    """Task ids (``<array>_<task>``) still pending or running, or None when squeue cannot answer."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(sorted(array_ids))],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.split()) if out.returncode == 0 else set()


def _failure(job: Any, spec: RunSpec) -> str:
    paths = job.paths
    if paths.result_pickle.is_file():
        try:
            job.result()
        except Exception as err:  # the task's own exception, re-raised by submitit
            return f"{spec.name} (task {job.job_id}) failed: {str(err).strip().splitlines()[-1]}; log {paths.stderr}"
    return f"{spec.name} (task {job.job_id}) ended without a result; see {paths.stderr}"


def wait_for_runs(
    study: Study,
    runs: list[RunSpec],
    jobs: dict[str, Any],
    *,
    timeout_s: float,
    poll_s: float = 3.0,
    progress: bool = True,
) -> None:
    """Wait until every run of ``runs`` has its ``result.json``, for at most ``timeout_s`` seconds.

    Args:
        study: the study.
        runs: the runs to wait for.
        jobs: run name -> submitit job, from :func:`submit_slurm`.
        timeout_s: the deadline.
        poll_s: seconds between looks at the result files and ``squeue``.
        progress: a progress bar over finished runs.

    Raises:
        GliomasegError: a task ended without a result (its error and log are named), or the deadline
            passed (the unfinished runs are named; their jobs keep running, collect later).
    """
    specs = {spec.name: spec for spec in runs}
    arrays = {job.job_id.split("_")[0] for job in jobs.values()}
    deadline = time.monotonic() + timeout_s
    gone_since: dict[str, float] = {}
    bar = tqdm(total=len(runs), desc="SLURM runs", unit="run", disable=not progress)
    while True:
        left = [name for name in specs if _pending(study, specs[name])]
        bar.n = len(runs) - len(left)
        bar.refresh()
        if not left:
            bar.close()
            return
        queued = _queued(arrays) if arrays else set()
        failures = []
        for name in left:
            job = jobs.get(name)
            if job is None or queued is None or job.job_id in queued:
                continue
            # Out of the queue: give the shared file system a moment to show the result.
            first = gone_since.setdefault(name, time.monotonic())
            settled = job.paths.result_pickle.is_file() or time.monotonic() - first > 3 * poll_s
            if settled and _pending(study, specs[name]):
                failures.append(_failure(job, specs[name]))
        if failures:
            bar.close()
            raise GliomasegError("SLURM tasks failed: " + " | ".join(failures))
        if time.monotonic() > deadline:
            bar.close()
            raise GliomasegError(
                f"{len(left)} runs unfinished after {timeout_s:.0f} s ({', '.join(left[:5])}); their jobs keep "
                "running: collect later with --collect"
            )
        time.sleep(poll_s)


def _pending(study: Study, spec: RunSpec) -> bool:
    return not (study.run_dir(spec) / "result.json").is_file()


def submit_array(
    folder: Path, name: str, fn: Callable[..., Any], arg_lists: Sequence[Sequence[Any]], settings: dict[str, Any]
) -> list[Any]:
    """Submit ``fn(*args)`` for each ``args`` of ``zip(*arg_lists)`` as one SLURM job array through submitit.

    What ``predict --launcher submitit`` uses (one task per shard); ``settings`` are the keys of a study
    file's ``slurm:`` section (``partition``, ``timeout_min``, ``mem_gb``, ``gpus_per_node``...).

    Returns:
        The submitit jobs, one per task.

    Raises:
        GliomasegError: no ``sbatch`` on this machine, submitit not installed, an unknown setting, or
            ``sbatch`` failing (its message included).
    """
    if shutil.which("sbatch") is None:
        raise GliomasegError(
            "--launcher submitit needs SLURM, but there is no sbatch on this machine; run it on a SLURM login "
            "node, or run each shard here or on other machines with --shard K/N"
        )
    try:
        import submitit
    except ImportError as err:
        raise GliomasegError("--launcher submitit needs submitit: pip install 'gliomaseg[study]'") from err
    params: dict[str, Any] = {"name": name, "timeout_min": 60}
    for key, value in settings.items():
        params[key if key in _GENERIC or key.startswith("slurm_") else f"slurm_{key}"] = value
    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="slurm")
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError, NameError) as err:  # submitit raises NameError for an unknown setting
        raise GliomasegError(f"slurm settings {settings}: {err}") from err
    try:
        jobs = executor.map_array(fn, *arg_lists)
    except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
        raise GliomasegError(f"sbatch failed: {getattr(err, 'output', None) or err}") from err
    log.info("submitted %d tasks as SLURM array %s", len(jobs), jobs[0].job_id.split("_")[0])
    return jobs
