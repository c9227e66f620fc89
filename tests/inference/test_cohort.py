"""``predict`` over a cohort: shards equal one run, a kill resumes to the same outputs, one bad case stops nothing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from gliomaseg.cli import main
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.cohort import Failures, finish_tables, shard_cases
from gliomaseg.inference.inputs import discover_inputs
from gliomaseg.inference.outputs import OutputOptions, finished_case
from gliomaseg.inference.predict import predict_inputs
from gliomaseg.inference.quality import QUALITY_COLUMNS
from gliomaseg.inference.segmenter import load_segmenter

SRC = Path(__file__).resolve().parents[2] / "src"


#: predict's per-case table.
TABLE = Path("cases.csv")


def _table_file(out: Path) -> Path:
    return out / TABLE


def _cohort(root: Path, n: int, shape=(48, 48, 6), bad: tuple[str, ...] = ()) -> Path:
    """``n`` NIfTI volumes in sub-folders ``case_<i>/`` (as a cohort arrives), plus corrupt files named ``bad``."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"case_{i:03d}"
        folder.mkdir(parents=True)
        volume = rng.normal(100, 30, shape).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.diag([0.9, 0.9, 4.0, 1.0])), str(folder / "flair.nii.gz"))
    for name in bad:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "flair.nii.gz").write_bytes(b"not a NIfTI at all")
    return root


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): np.asarray(nib.load(str(p)).dataobj) for p in sorted(out.rglob("*_mask.nii.gz"))}


def _same_outputs(a: Path, b: Path, quality_blank: set[str] = frozenset()) -> None:
    """``b``'s masks and tables are ``a``'s, but for the inputs in ``quality_blank``: a case that a
    resume skipped after a kill has no quality in ``b`` (its probabilities are gone; README)."""
    masks_a, masks_b = _masks(a), _masks(b)
    assert masks_a.keys() == masks_b.keys() and masks_a
    for key in masks_a:
        np.testing.assert_array_equal(masks_a[key], masks_b[key])
    # The mask column names each run's own folder; everything else is the same text.
    cases_a, cases_b = ((d / TABLE).read_text().replace(str(d), "OUT") for d in (a, b))
    if quality_blank:
        table_a, table_b = (
            pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False) for text in (cases_a, cases_b)
        )
        skipped = table_b["input"].isin(quality_blank)
        assert (table_b.loc[skipped, list(QUALITY_COLUMNS)] == "").all().all()
        table_a.loc[skipped, list(QUALITY_COLUMNS)] = ""
        pd.testing.assert_frame_equal(table_a, table_b)
    else:
        assert cases_a == cases_b
    components_a, components_b = ((d / "components.csv").read_text().replace(str(d), "OUT") for d in (a, b))
    assert components_a == components_b


@pytest.fixture(scope="module")
def seg(model_file):
    return load_segmenter(model_file(), device="cpu")


@pytest.mark.parametrize(
    ("shard", "expected"),
    [
        (None, [0, 1, 2, 3, 4, 5, 6]),
        ((1, 1), [0, 1, 2, 3, 4, 5, 6]),
        ((1, 3), [0, 3, 6]),
        ((3, 3), [2, 5]),
        ((7, 7), [6]),
    ],
)
def test_shards_take_every_nth_case(shard, expected) -> None:
    assert shard_cases(list(range(7)), shard) == expected


@pytest.mark.parametrize("shard", [(0, 2), (3, 2)])
def test_impossible_shards_are_refused(shard) -> None:
    with pytest.raises(GliomasegError, match="between 1 and N"):
        shard_cases([1, 2], shard)


@pytest.mark.parametrize("n_shards", [2, 3])
def test_sharded_cohort_equals_one_run(tmp_path: Path, seg, n_shards: int) -> None:
    cohort = _cohort(tmp_path / "cohort", 5, bad=("case_002b",))
    whole = tmp_path / "whole"
    one = predict_inputs(seg, cohort, whole, overlays=False)
    assert len(one) == 5 and one.attrs["failed"]["case"].tolist() == ["flair"]
    sharded = tmp_path / "sharded"
    for k in range(1, n_shards + 1):
        assert not _table_file(sharded).exists()  # merged only when the last shard is done
        part = predict_inputs(seg, cohort, sharded, overlays=False, shard=(k, n_shards))
        assert (sharded / f"{TABLE.stem}.shard-{k}-of-{n_shards}.csv").is_file()
        assert 0 < len(part) + len(part.attrs["failed"]) < 6
    _same_outputs(whole, sharded)
    assert (whole / "failed.csv").read_text() == (sharded / "failed.csv").read_text()
    # A shard run again finds its outputs: refused without --resume, skipped with it.
    with pytest.raises(GliomasegError, match="--resume"):
        predict_inputs(seg, cohort, sharded, overlays=False, shard=(1, n_shards))
    predict_inputs(seg, cohort, sharded, overlays=False, shard=(1, n_shards), resume=True)
    _same_outputs(whole, sharded)


def test_a_cohort_is_read_one_case_at_a_time(tmp_path: Path, model_file) -> None:
    # 40 volumes of 96 x 96 x 24: 0.66 MB each as three uint8 channels, 26.5 MB if all were held at once
    # (32.7 MB peak when predict read every input before the model ran; about 7 MB one case at a time).
    cohort = _cohort(tmp_path / "cohort", 40, shape=(96, 96, 24))
    # A constant net (every voxel tumour: one component per case): the untrained one finds thousands of specks in
    # noise, whose components.csv rows (kept for the table) would be measured here instead of the volumes.
    seg = load_segmenter(model_file(bias=10.0), device="cpu")
    # One case first: what the first case loads once (the overview's fonts...) is not a volume held.
    predict_inputs(seg, _cohort(tmp_path / "warm", 1, shape=(96, 96, 24)), tmp_path / "warm_out", overlays=False)
    tracemalloc.start()
    try:
        table = predict_inputs(seg, cohort, tmp_path / "out", overlays=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(table) == 40 and peak < 16e6, f"{peak / 1e6:.1f} MB of numpy arrays at the peak"


def test_a_killed_cohort_resumes_to_the_outputs_of_one_run(tmp_path: Path, model_file) -> None:
    cohort = _cohort(tmp_path / "cohort", 40, shape=(96, 96, 12))
    model = model_file()
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "gliomaseg", "predict", "--model", str(model), str(cohort), "--out", str(killed)]
    command += ["--no-overlays", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = killed / "cohort" / "case_000" / "flair_mask.nii.gz"
    deadline = time.monotonic() + 300
    while not first.exists():
        assert proc.poll() is None, f"predict ended before its first case was written: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "predict wrote no case within 300 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    n_written = len(list(killed.rglob("*_mask.nii.gz")))
    assert 1 <= n_written < 40, "the kill came after the last case: make the cases bigger"
    # the cases resume will skip, by predict's own test of "all outputs written"
    options = OutputOptions(overlays=False, overview=True, probabilities=False)
    finished = {str(case.source) for case in discover_inputs([cohort], killed) if finished_case(case, options)}
    assert not _table_file(killed).exists()
    assert main(["predict", "--model", str(model), str(cohort), "--out", str(killed), "--no-overlays"]) == 2
    assert main(["predict", "--model", str(model), str(cohort), "--out", str(killed), "--no-overlays", "--resume"]) == 0
    whole = tmp_path / "whole"
    assert main(["predict", "--model", str(model), str(cohort), "--out", str(whole), "--no-overlays"]) == 0
    _same_outputs(whole, killed, quality_blank=finished)


def test_cli_lists_a_failed_case_and_exits_1(tmp_path: Path, model_file, capsys: pytest.CaptureFixture[str]) -> None:
    cohort = _cohort(tmp_path / "cohort", 2, bad=("broken",))
    out = tmp_path / "out"
    argv = ["predict", "--model", str(model_file()), str(cohort), "--out", str(out), "--no-overlays"]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 1
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if line.startswith("gliomaseg predict:")]
    assert "1 of 3 case(s) failed" in line and "failed.csv" in line and "flair" in line
    assert "broken" in captured.out  # the failed case's row in the printed table
    assert len(pd.read_csv(_table_file(out))) == 2
    (failed,) = pd.read_csv(out / "failed.csv").to_dict("records")
    assert failed["input"].endswith("broken/flair.nii.gz") and "unreadable" in failed["error"]
    # Fixed, the case is predicted by --resume and failed.csv goes.
    (cohort / "broken" / "flair.nii.gz").unlink()
    _cohort(tmp_path / "fix", 1)
    (tmp_path / "fix" / "case_000" / "flair.nii.gz").rename(cohort / "broken" / "flair.nii.gz")
    assert main([*argv, "--resume"]) == 0
    assert len(pd.read_csv(_table_file(out))) == 3 and not (out / "failed.csv").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--shard", "3/2"], "K must be between 1 and N"),
        (["--shard", "half"], "write K/N"),
        (["--launcher", "submitit"], "needs SLURM, but there is no sbatch"),
        (["--launcher", "submitit", "--shard", "1/2"], "with --launcher submitit give --jobs N"),
        (["--jobs", "2"], "use them with --launcher submitit"),
        (["--launcher", "submitit", "--slurm", "partition"], "write KEY=VALUE"),
    ],
)
def test_cohort_flags_fail_in_one_line(tmp_path, model_file, monkeypatch, capsys, flags, message) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    cohort = _cohort(tmp_path / "cohort", 1)
    argv = ["predict", "--model", str(model_file()), str(cohort), "--out", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gliomaseg predict: error: ") and message in line


def _tables(cases, failures: Failures) -> dict[Path, tuple[pd.DataFrame, list]]:
    """A per-case table and a per-component one (0-2 rows per case) of the cases that did not fail."""
    done = [c for c in cases if not failures.failed(c)]
    parts = [(c, f"{c.name}-{j}") for c in done for j in range(len(c.name) % 3)]
    return {
        Path("cases.csv"): (
            pd.DataFrame({"case": [c.name for c in done], "ml": [0.5 * len(c.name) for c in done]}),
            done,
        ),
        Path("components.csv"): (
            pd.DataFrame({"case": [c.name for c, _ in parts], "part": [p for _, p in parts]}),
            [c for c, _ in parts],
        ),
    }


def test_shard_tables_merge_into_the_tables_of_one_run(tmp_path: Path) -> None:
    cohort = [
        SimpleNamespace(name=name, source=Path(f"in/{name}.nii.gz")) for name in ("a", "bb", "007", "ccc", "d", "ee")
    ]

    def run(out: Path, shard) -> bool:
        failures = Failures()
        for case in shard_cases(cohort, shard):
            with failures.catch(case):
                if case.name in ("ccc", "a"):
                    raise GliomasegError(f"{case.source}: unreadable")
        tables = {out / path: value for path, value in _tables(shard_cases(cohort, shard), failures).items()}
        return finish_tables(tables, failures, cohort, shard)

    assert run(tmp_path / "one", None)
    assert [run(tmp_path / "three", (k, 3)) for k in (3, 1, 2)] == [False, False, True]  # any order; the last merges
    for name in ("cases.csv", "components.csv", "failed.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "three" / name).read_text(), name
    assert pd.read_csv(tmp_path / "one" / "cases.csv", dtype=str)["case"].tolist() == ["bb", "007", "d", "ee"]
    # Shard tables of another cohort in the folder are never merged into this one.
    other = [SimpleNamespace(name=f"x{i}", source=Path(f"x{i}")) for i in range(6)]
    failures = Failures()
    tables = {tmp_path / "three" / p: v for p, v in _tables(shard_cases(other, (1, 3)), failures).items()}
    assert not finish_tables(tables, failures, other, (1, 3))
