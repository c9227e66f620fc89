"""Atomic writes and the temporaries of killed processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gliomaseg.utils import atomic_write, atomic_write_text, owner_tag, remove_abandoned


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def fail(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk trouble")

    with pytest.raises(RuntimeError, match="disk trouble"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    host = owner_tag().split("h", 1)[1]
    dead = tmp_path / f".a.txt.p{_dead_pid()}h{host}.x1y2z3.tmp"  # left by a killed writer
    alive = tmp_path / f".b.txt.{owner_tag()}.q9r8s7.tmp"  # being written by this process
    other_host = tmp_path / f".c.txt.p{_dead_pid()}h00000000.a1b2c3.tmp"  # maybe alive on another machine
    user_file = tmp_path / ".notes.p1.txt"
    for path in (dead, alive, other_host, user_file):
        path.write_text("x")
    atomic_write_text(tmp_path / "a.txt", "new")
    assert not dead.exists() and alive.exists() and other_host.exists() and user_file.exists()


def test_remove_abandoned_folders(tmp_path: Path) -> None:
    host = owner_tag().split("h", 1)[1]
    dead = tmp_path / f".tmp-key-p{_dead_pid()}h{host}-abc"
    (dead / "sub").mkdir(parents=True)
    alive = tmp_path / f".tmp-key-{owner_tag()}-def"
    alive.mkdir()
    assert remove_abandoned(tmp_path, ".tmp-*") == [dead]
    assert not dead.exists() and alive.is_dir()
