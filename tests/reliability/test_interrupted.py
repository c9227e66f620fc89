"""Interrupted work loses nothing: killed and terminated runs resume, killed builds leave nothing behind.

Real signals: SIGKILL goes to a ``gliomaseg`` subprocess; SIGTERM goes to this test process while
``main()`` trains in it (``main`` turns SIGTERM into a clean stop; the test keeps its own handler
around it, so a late signal can never end the test run).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gliomaseg.checkpoint import load_checkpoint
from gliomaseg.cli import main
from gliomaseg.training import read_training_log

_WAIT_S = 120
TINY = ["--size", "32", "--features", "4", "--batch-size", "8", "--num-workers", "0", "--loss", "bce_dice"]
TINY += ["--limit-train-batches", "3", "--limit-val-batches", "2"]


def _wait_for(
    condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None, poll_s: float = 0.02
) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (status {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll_s)


def _assert_clean(log: str) -> None:
    """What a user sees of a training start: no library adverts, hints or deprecations, each line once."""
    for noise in ("GPU available", "Tip:", "litlogger", "srun", "LeafSpec", "deprecated", "INFO:", "Warning"):
        assert noise not in log, f"{noise!r} in the log:\n{log}"
    lines = [line for line in re.split(r"[\r\n]", log) if line.strip() and "it/s" not in line and "%|" not in line]
    assert len(lines) == len(set(lines)), lines


def _saved_epoch(run: Path) -> int:
    try:
        return int(load_checkpoint(run / "last.pt")["epoch"])
    except (ValueError, OSError):  # not written yet
        return -1


@contextmanager
def _sigterm_when(condition: Callable[[], bool]) -> Iterator[list[int]]:
    """Send SIGTERM to this process once ``condition()`` holds; yields the list of signals received
    outside ``main`` (by the test's own handler, which stays in place around the block)."""
    late: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: late.append(signum))
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if condition():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield late
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGTERM, previous)


def test_train_killed_then_terminated_resumes_to_the_full_epoch_count(phantoms, phantom_workdir, tmp_path, capsys):
    runs, epochs = tmp_path / "runs", 6
    argv = ["train", "--data", str(phantoms), "--workdir", str(phantom_workdir), "--runs-dir", str(runs)]
    argv += [*TINY, "--epochs", str(epochs), "--run-name", "r"]
    run = runs / "r"
    # 1. SIGKILL in the middle of epoch 1 (right after epoch 0 was saved)
    proc = subprocess.Popen([sys.executable, "-m", "gliomaseg.cli", *argv], stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _saved_epoch(run) >= 0, "the first epoch was saved", proc)
    proc.kill()
    _, log = proc.communicate()
    _assert_clean(log)
    killed_at = _saved_epoch(run)  # 0, unless the kill came late
    config = (run / "config.yaml").read_bytes()
    # 2. resume from the folder alone (plus a hardware flag); SIGTERM once it saved an epoch
    with _sigterm_when(lambda: _saved_epoch(run) > killed_at) as late:
        status = main(["train", "--resume-from", str(run), "--num-workers", "0"])
    err = capsys.readouterr().err
    assert status == 130 and not late, err
    # the signal lands at the end of the first resumed epoch (before Lightning saved it) or in the next
    stopped = re.search(r"interrupted: training stopped during epoch (\d) \(epochs up to (\d) are saved\)", err)
    assert stopped and int(stopped[1]) - killed_at in (1, 2) and int(stopped[2]) == int(stopped[1]) - 1, err
    assert f"continue with `gliomaseg train --resume-from {run}`" in err
    # 3. resume to the end
    assert main(["train", "--resume-from", str(run)]) == 0
    assert (run / "config.yaml").read_bytes() == config
    assert load_checkpoint(run / "last.pt")["epoch"] == epochs - 1
    log = read_training_log(run).dropna(subset=["val/dice_patient"])
    assert list(log["epoch"]) == list(range(epochs))  # each epoch once: at most the cut one was redone
    best = load_checkpoint(run / "best.pt")["metrics"]["val/dice_patient"]
    assert best == pytest.approx(log["val/dice_patient"].max())


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the worker processes")
def test_a_killed_cache_build_leaves_no_workers_and_its_folder_is_removed_next_time(phantoms, tmp_path, caplog):
    argv = ["cache", "--data", str(phantoms), "--workdir", str(tmp_path), "--size", "256"]
    proc = subprocess.Popen([sys.executable, "-m", "gliomaseg.cli", *argv], stderr=subprocess.PIPE, text=True)
    workers: list[int] = []

    def started() -> bool:
        workers.extend(_children(proc.pid))
        return bool(workers)

    _wait_for(started, "the build started its worker processes", proc, poll_s=0.002)
    proc.kill()
    proc.wait()
    left = list((tmp_path / "cache").glob(".tmp-*"))
    assert left, "the killed build left no temporary folder: it finished before the kill"
    _wait_for(lambda: not any(_running(w) for w in workers), "the orphaned workers exited")
    caplog.set_level(logging.INFO)
    assert main(argv) == 0
    assert not any(p.exists() for p in left) and not list((tmp_path / "cache").glob(".tmp-*"))
    assert len(list((tmp_path / "cache").glob("*/meta.json"))) == 1
    assert "removed 1 temporary file(s) left by killed runs" in caplog.text
