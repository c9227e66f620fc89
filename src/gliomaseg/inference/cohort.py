"""Cohorts: ``predict`` over many cases, in shards over machines or SLURM array tasks, where one bad case
does not stop the others.

- **Failures.** A case whose input cannot be read or segmented (a
  :class:`~gliomaseg.errors.GliomasegError`: a corrupt file, a wrong shape...) is logged, left out of
  the per-case table and listed in ``failed.csv`` (``input, case, error``); the other cases go on.
  ``gliomaseg predict`` then exits with status 1 and a one-line summary. A run without failures
  removes the ``failed.csv`` of an earlier run into the same folder (``--resume`` retries failed
  cases: they have no outputs).
- **Shards** (``--shard K/N``, parsed like ``gliomaseg study --shard``): the cases are found and
  ordered as for one run (inputs in the order given, folders sorted), and shard K takes every N-th
  case from the K-th (:func:`shard_cases`, the split of :func:`gliomaseg.study.launchers.shard_runs`).
  Shards may run at once on several machines sharing ``--out``: each writes its cases' outputs and
  ``<table>.shard-K-of-N.csv`` (and ``failed.shard-K-of-N.csv``), whose ``index`` column is the
  case's place in the whole cohort. The shard that finds every case of the cohort in the shard tables
  (the last to finish) merges them into the table and ``failed.csv`` an unsharded run writes, with
  the same rows in the same order (:func:`finish_tables`); the shard files stay as a record.
- **SLURM**: ``--launcher submitit --jobs N`` submits one array task per shard through the launcher of
  ``gliomaseg study`` (:func:`run_shard` is the task).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gliomaseg.errors import GliomasegError, OutputExistsError
from gliomaseg.utils import atomic_write_text

__all__ = [
    "FAILED_COLUMNS",
    "FAILED_NAME",
    "Failures",
    "absolute",
    "finish_tables",
    "shard_cases",
    "shard_table",
]

log = logging.getLogger(__name__)

FAILED_COLUMNS: tuple[str, ...] = ("input", "case", "error")
FAILED_NAME = "failed.csv"


def shard_cases(cases: Sequence[Any], shard: tuple[int, int] | None) -> list[Any]:
    """The K-th of N slices of the cases: every N-th case from the K-th (all of them for None).

    Raises:
        GliomasegError: not ``1 <= K <= N``.

    Example:
        >>> shard_cases(["a", "b", "c", "d", "e"], (2, 2))
        ['b', 'd']
    """
    if shard is None:
        return list(cases)
    k, n = shard
    if not 1 <= k <= n:
        raise GliomasegError(f"shard {k}/{n}: K must be between 1 and N, e.g. 1/4 for the first of 4")
    return list(cases[k - 1 :: n])


def shard_table(path: Path, shard: tuple[int, int]) -> Path:
    """``cases.csv`` -> ``cases.shard-K-of-N.csv`` (beside it)."""
    return path.with_name(f"{path.stem}.shard-{shard[0]}-of-{shard[1]}{path.suffix}")


@dataclass
class Failures:
    """The cases that failed in one run: ``rows`` of ``input, case, error``, their ``errors`` and ``cases``."""

    rows: list[dict[str, str]] = field(default_factory=list)
    errors: list[GliomasegError] = field(default_factory=list)
    cases: list[Any] = field(default_factory=list)
    _ids: set[int] = field(default_factory=set)

    @contextmanager
    def catch(self, case: Any) -> Iterator[None]:
        """Run the block for ``case``; a :class:`GliomasegError` in it marks the case failed and is logged.

        A refused overwrite (:class:`OutputExistsError`) and any other exception still stop the run:
        they are not about this one case.
        """
        try:
            yield
        except OutputExistsError:
            raise
        except GliomasegError as err:
            message = " ".join(str(err).split())
            log.error("%s failed, the other cases go on: %s", case.name, message)
            self.rows.append({"input": str(case.source), "case": case.name, "error": message})
            self.errors.append(err)
            self.cases.append(case)
            self._ids.add(id(case))

    def failed(self, case: Any) -> bool:
        """Whether ``case`` failed."""
        return id(case) in self._ids

    def raise_if_all(self, cases: Sequence[Any]) -> None:
        """Raise when every one of ``cases`` (at least one) failed: nothing is left to predict.

        Raises:
            GliomasegError: the one case's own error, or one naming how many failed and the first error.
        """
        if not cases or len(self.errors) < len(cases) or not all(self.failed(case) for case in cases):
            return
        if len(self.errors) == 1:
            raise self.errors[0]
        raise GliomasegError(f"all {len(self.errors)} cases failed; the first: {self.rows[0]['error']}")

    def table(self) -> pd.DataFrame:
        """``failed.csv``'s table."""
        return pd.DataFrame(self.rows, columns=list(FAILED_COLUMNS))


def _indexed(table: pd.DataFrame, cases: Sequence[Any], positions: dict[int, int]) -> pd.DataFrame:
    """``table`` (row i of ``cases[i]``) with an ``index`` column first: the place of each row's case in the cohort."""
    return table.assign(index=[positions[id(case)] for case in cases]).loc[:, ["index", *table.columns]]


def finish_tables(
    tables: Mapping[Path, tuple[pd.DataFrame, Sequence[Any]]],
    failures: Failures,
    cohort: Sequence[Any],
    shard: tuple[int, int] | None,
) -> bool:
    """Write a run's tables and ``failed.csv``; for a shard, its own tables and, when it is the last, the merge.

    Args:
        tables: file -> ``(rows, the case of each row)``, the per-case table first (e.g.
            ``out/cases.csv``: one row per predicted case); others (e.g. one row per tumour component)
            are merged the same way. ``failed.csv`` goes beside the first.
        failures: this run's failures.
        cohort: every case of the cohort, in order (the cases before sharding).
        shard: ``(K, N)``, or None for an unsharded run.

    Returns:
        Whether the cohort's tables were written (an unsharded run, or the shard that merged).
    """
    first = next(iter(tables))
    failed_path = first.with_name(FAILED_NAME)
    positions = {id(case): i for i, case in enumerate(cohort)}
    failed = _indexed(failures.table(), failures.cases, positions)
    if shard is None:
        for path, (table, _) in tables.items():
            atomic_write_text(path, table.to_csv(index=False))
        _write_failed(failed_path, _in_order(failed))  # in cohort order, as a merge of shards writes it
        return True
    for path, (table, cases) in tables.items():
        atomic_write_text(shard_table(path, shard), _indexed(table, cases, positions).to_csv(index=False))
    atomic_write_text(shard_table(failed_path, shard), failed.to_csv(index=False))
    return _merge([*tables], failed_path, cohort, shard[1])


def _write_failed(path: Path, failed: pd.DataFrame) -> None:
    if len(failed):
        atomic_write_text(path, failed.to_csv(index=False))
    else:
        path.unlink(missing_ok=True)  # a failed.csv of an earlier run into this folder no longer holds


def _read_shards(path: Path, n: int) -> pd.DataFrame:
    tables = []
    for k in range(1, n + 1):
        shard = shard_table(path, (k, n))
        if shard.is_file():
            # As text, so that the merged table keeps every cell as the shard wrote it (case "007" stays "007").
            tables.append(pd.read_csv(shard, dtype=str, keep_default_na=False))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["index", "case"])


def _in_order(table: pd.DataFrame) -> pd.DataFrame:
    order = table["index"].astype(int).to_numpy().argsort(kind="stable")
    return table.iloc[order].drop(columns="index")


def _merge(paths: list[Path], failed_path: Path, cohort: Sequence[Any], n: int) -> bool:
    rows, failed = _read_shards(paths[0], n), _read_shards(failed_path, n)
    found = pd.concat([rows[["index", "case"]], failed[["index", "case"]]], ignore_index=True)
    expected = {i: str(case.name) for i, case in enumerate(cohort)}
    # A row of a shard table written for another cohort (other inputs) must not be merged into this one.
    stale = [f"{r.case}@{r.index}" for r in found.itertuples() if expected.get(int(r.index)) != r.case]
    if stale:
        log.warning("shard tables beside %s list cases of another cohort (%s); not merged", paths[0], stale[:3])
        return False
    missing = len(set(expected) - set(found["index"].astype(int)))
    if missing:
        log.info("%d of %d case(s) still to do in other shards; the last shard merges the tables", missing, len(cohort))
        return False
    atomic_write_text(paths[0], _in_order(rows).to_csv(index=False))
    for path in paths[1:]:
        atomic_write_text(path, _in_order(_read_shards(path, n)).to_csv(index=False))
    _write_failed(failed_path, _in_order(failed))
    log.info("all %d shards done: merged into %s", n, ", ".join(str(p) for p in paths))
    return True


def absolute(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Absolute paths, for a task that may start in another folder."""
    return [str(Path(p).resolve()) for p in paths]
