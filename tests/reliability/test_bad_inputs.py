"""The bad-input corpus (``corpus.py``) through index, cache, train, evaluate, predict, export and serve.

(Training refusals, bad resume files and diverging runs are in tests/training/test_resume.py.)

Every bad input ends in one line ``gliomaseg CMD: error: ...`` that names the file and the fix (exit
status 2), or, with ``--skip-bad``, is left out and listed once: never a traceback from inside a
library, never a silently wrong result. Commands run in-process through ``main()`` on tiny inputs.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from corpus import DATASET_FAULTS, INPUT_FAULTS, MODEL_FAULTS, Fault, good_awkward_patients, looping_folder

from gliomaseg.cli import main
from gliomaseg.data.cache import open_cache
from gliomaseg.data.index_table import load_index
from gliomaseg.data.phantoms import synthesise_dataset


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _error_line(err: str, command: str) -> str:
    """The command's one error line (progress bars may precede it on stderr), checked for no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]
    assert lines and lines[-1].startswith(f"gliomaseg {command}: error: "), err
    assert sum("error:" in line for line in lines) == 1, err
    return lines[-1]


def _names(line: str, path: Path, reason: str) -> None:
    """``line`` names ``path`` with ``reason`` in the same entry of the message."""
    entries = [e for e in re.split(r"\(\d+\) ", line) if str(path) in e]
    assert entries, f"{path} not named in: {line}"
    assert any(re.search(reason, e) for e in entries), f"{reason!r} not in: {entries}"


# ------------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def corpus_data(tmp_path_factory: pytest.TempPathFactory, phantoms: Path) -> tuple[Path, dict[str, Path], list[str]]:
    """The phantoms plus one patient per dataset fault and the awkward valid patients."""
    root = tmp_path_factory.mktemp("corpus") / "kaggle_3m"
    shutil.copytree(phantoms, root)
    bad = {fault.name: fault.make(root) for fault in DATASET_FAULTS}
    return root, bad, good_awkward_patients(root)


def test_index_names_every_bad_file_in_one_error_and_skip_bad_lists_each_once(corpus_data, tmp_path, capsys):
    root, bad, awkward = corpus_data
    status, _, err = _run(["index", root, "--workdir", tmp_path / "a"], capsys)
    line = _error_line(err, "index")
    assert status == 2 and f"{len(DATASET_FAULTS)} bad file(s) in {root}" in line and "--skip-bad" in line
    for fault in DATASET_FAULTS:
        _names(line, bad[fault.name], fault.reason)
    assert not (tmp_path / "a").exists()

    status, out, _ = _run(["index", root, "--workdir", tmp_path / "b", "--skip-bad"], capsys)
    assert status == 0
    for path in bad.values():
        assert sum(line.startswith(f"skipped {path}: ") for line in out.splitlines()) == 1, path
    table = load_index(tmp_path / "b" / "index.csv")
    files = set(table["image_path"]) | set(table["mask_path"])
    assert not files & {str(p) for p in bad.values()}
    assert set(awkward) <= set(table["patient_id"])  # non-ASCII, spaces, one slice: all indexed


def test_cache_builds_what_index_kept(corpus_data, tmp_path, capsys):
    """The cache (what training reads) of the kept slices, awkward names and one-slice patient included."""
    root, _, awkward = corpus_data
    assert _run(["index", root, "--workdir", tmp_path, "--skip-bad"], capsys)[0] == 0
    status, out, _ = _run(["cache", "--workdir", tmp_path, "--size", "32"], capsys)
    assert status == 0 and f"{len(load_index(tmp_path / 'index.csv'))} slices" in out
    (cache,) = (tmp_path / "cache").glob("*/meta.json")
    assert set(awkward) <= set(open_cache(cache.parent).patients)


def test_cache_names_a_file_damaged_after_indexing(tmp_path, capsys):
    root = synthesise_dataset(tmp_path / "kaggle_3m", 2, slices=(3, 3), size=32)
    assert _run(["index", root, "--workdir", tmp_path], capsys)[0] == 0
    damaged = sorted(root.glob("*/*_2.tif"))[0]
    damaged.write_bytes(damaged.read_bytes()[:200])
    status, _, err = _run(["cache", "--workdir", tmp_path, "--size", "32"], capsys)
    assert status == 2 and f"{damaged}: unreadable or truncated" in _error_line(err, "cache")
    assert not list((tmp_path / "cache").glob(".tmp-*")) and not list((tmp_path / "cache").glob("*/meta.json"))


# -------------------------------------------------------------------------------- prediction inputs
@pytest.mark.parametrize("fault", INPUT_FAULTS, ids=[f.name for f in INPUT_FAULTS])
def test_predict_refuses_each_bad_input_naming_it(fault: Fault, model_file, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    path = fault.make(tmp_path / "in")
    argv = ["predict", "--model", model_file(), path, "--out", tmp_path / "out", "--no-overlays"]
    status, _, err = _run(argv, capsys)
    assert status == 2
    line = _error_line(err, "predict")
    assert str(path) in line and re.search(fault.reason, line), line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


@pytest.mark.parametrize("fault", INPUT_FAULTS, ids=[f.name for f in INPUT_FAULTS])
def test_the_web_page_shows_each_bad_input_as_a_message(fault: Fault, model_file, tmp_path):
    pytest.importorskip("gradio", reason="the web viewer needs the web extra")
    from gliomaseg.inference.segmenter import load_segmenter
    from gliomaseg.web.handlers import VIEW, Viewer

    (tmp_path / "in").mkdir()
    path = fault.make(tmp_path / "in")
    files = sorted(str(p) for p in path.iterdir()) if path.is_dir() else [str(path)]
    viewer = Viewer(load_segmenter(model_file(), graph_fusion=False), tmp_path / "web", 2**20)
    view = viewer.new_scan(None, 1, 0.5, 0, False, False, False, files, None)
    status = view[VIEW.index("status")]
    assert view[VIEW.index("analysis")] is None and "internal error" not in status
    assert re.search(fault.reason, status.replace("&#x27;", "'")), status


def test_awkward_but_valid_inputs_are_predicted_once_each(corpus_data, model_file, tmp_path, capsys, caplog):
    root, _, _ = corpus_data
    patients = [root / "Patiënt 7 ü", root / "ONE SLICE", looping_folder(tmp_path)]
    status, out, err = _run(["predict", "--model", model_file(), *patients, "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    assert "3 case(s), 6 slice(s)" in out
    assert len(list((tmp_path / "out" / "Patiënt 7 ü").glob("*_mask.tif"))) == 3
    assert len(list((tmp_path / "out" / "loop P").glob("*_mask.tif"))) == 2  # the loop searched once
    assert "searched already" in caplog.text and "a broken link or a link loop" in caplog.text


# ------------------------------------------------------------------------------------------ models
def _model_argv(command: str, model: Path, phantoms: Path, out: Path) -> list[object]:
    if command == "evaluate":
        return ["evaluate", "--model", model, "--data", phantoms, "--split", "all", "--out", out, "--no-figures"]
    if command == "predict":
        return ["predict", "--model", model, next(p for p in phantoms.iterdir() if p.is_dir()), "--out", out]
    if command == "serve":  # refused while loading, before anything is bound
        return ["serve", "--model", model, "--port", "1"]
    return ["export", "--model", model, "--out", out / "m.onnx"]


MODEL_CASES = [
    (command, fault)
    for command in ("evaluate", "predict", "export", "serve")
    for fault in MODEL_FAULTS
    if command in ("predict", "serve") or not fault.name.endswith("onnx")
]


@pytest.mark.parametrize(("command", "fault"), MODEL_CASES, ids=[f"{c}-{f.name}" for c, f in MODEL_CASES])
def test_a_bad_model_file_is_refused_safely(command: str, fault: Fault, phantoms, tmp_path, capsys):
    if command == "serve":
        pytest.importorskip("gradio", reason="the web viewer needs the web extra")
    model = fault.make(tmp_path)
    status, _, err = _run(_model_argv(command, model, phantoms, tmp_path / "out"), capsys)
    line = _error_line(err, command)
    assert status == 2 and str(model) in line and re.search(fault.reason, line), line
    assert "weights_only" not in line  # never advice to load the file unsafely


def test_evaluate_refuses_an_index_of_a_sibling_folder(model_file, tmp_path, capsys):
    other = synthesise_dataset(tmp_path / "lgg-2", 2, slices=(2, 2), size=32)
    (tmp_path / "lgg").mkdir()
    assert _run(["index", other, "--workdir", tmp_path], capsys)[0] == 0
    argv = ["evaluate", "--model", model_file(), "--data", tmp_path / "lgg", "--index", tmp_path / "index.csv"]
    status, _, err = _run([*argv, "--split", "all", "--out", tmp_path / "ev"], capsys)
    assert status == 2 and "was built from another folder than" in _error_line(err, "evaluate")


# --------------------------------------------------------------------------------- folders and disks
def _writes(command: str, target: Path, phantoms: Path, workdir: Path, model: Path) -> list[object]:
    return {
        "index": ["index", phantoms, "--workdir", target],
        "cache": ["cache", "--data", phantoms, "--workdir", target, "--size", "32"],
        "train": ["train", "--data", phantoms, "--workdir", workdir, "--runs-dir", target, "--size", "32"],
        "evaluate": ["evaluate", "--model", model, "--data", phantoms, "--split", "all", "--out", target / "ev"]
        + ["--no-figures"],
        "predict": ["predict", "--model", model, phantoms, "--out", target / "pred"],
        "export": ["export", "--model", model, "--out", target / "m.onnx"],
    }[command]


@pytest.mark.parametrize("command", ["index", "cache", "train", "evaluate", "predict", "export"])
def test_a_read_only_output_folder_is_one_line(
    command, read_only_folder, phantoms, phantom_workdir, model_file, capsys
):
    argv = _writes(command, read_only_folder, phantoms, phantom_workdir, model_file())
    status, _, err = _run([*argv, "--features", "4"] if command == "train" else argv, capsys)
    line = _error_line(err, command)
    assert status == 2 and re.search(r"read-only file system|permission denied", line, re.IGNORECASE), line
    assert str(read_only_folder) in line


@pytest.mark.parametrize("command", ["cache", "predict"])
def test_a_full_disk_is_one_line_and_leaves_no_partial_files(command, full_disk, phantoms, model_file, capsys):
    status, _, err = _run(_writes(command, full_disk, phantoms, full_disk, model_file()), capsys)
    line = _error_line(err, command)
    assert status == 2 and "no space left on device; free some space" in line, line
    leftovers = [p for p in full_disk.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], leftovers  # no temporary files, no half-built cache


def test_unreadable_files_and_folders_are_named_together(unprivileged, tmp_path):
    root = synthesise_dataset(tmp_path / "kaggle_3m", 3, slices=(2, 2), size=32)
    patients = sorted(p for p in root.iterdir() if p.is_dir())
    unreadable_file = sorted(patients[0].glob("*_1.tif"))[0]
    unreadable_file.chmod(0o000)
    patients[1].chmod(0o000)
    done = unprivileged([sys.executable, "-m", "gliomaseg.cli", "index", str(root), "--workdir", str(tmp_path)])
    line = _error_line(done.stderr, "index")
    assert done.returncode == 2 and "2 bad file(s)" in line, done.stderr
    assert f"{unreadable_file}: cannot read it (permission denied); fix its permissions" in line
    assert f"cannot list {patients[1]} (permission denied)" in line
