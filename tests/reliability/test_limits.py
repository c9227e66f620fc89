"""Hostile inputs, round 2 (issue 23): bombs, the memory budget, model files checked by running them.

The bombs are built on the fly in ``tmp_path`` and are tiny on disk (the builders are shared with
``benchmarks/bombs_web.py``, which measures the server's peak memory for each): a 17 KB 1-bit PNG
of 12000 x 12000 pixels, a 850 KB zip of 5000 slices, a ``.nii.gz`` of a few hundred KB declaring
97 M voxels that nibabel returns as float64. Each must be refused from its headers, before
decoding: the web page's reader runs them in a child process whose peak memory is measured.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchmarks.bombs_web import many_slices_zip, pixel_bomb_png, scaled_nifti_bomb

from gliomaseg.cli import main
from gliomaseg.data.io import write_image
from gliomaseg.errors import GliomasegError
from gliomaseg.inference.backends import check_output_shape
from gliomaseg.inference.limits import Limits
from gliomaseg.inference.nifti import nifti_decoded_size

ROOT = Path(__file__).resolve().parents[2]
#: The child process that reads a bomb (numpy, Pillow, nibabel, gliomaseg's readers) takes ~60 MB;
#: decoding any of the bombs would take 400 MB or more.
MAX_CHILD_RSS_MB = 200


def _run(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _error_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"gliomaseg {command}: error: "), err
    return lines[-1]


def _read_upload_in_child(files: list[Path], work: Path) -> tuple[str, int]:
    """The web page's reader (``load_upload``, default limits) in a fresh process: (its error, peak RSS in MB)."""
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "from gliomaseg.errors import GliomasegError\n"
        "from gliomaseg.web.uploads import load_upload\n"
        "try:\n"
        f"    load_upload({[str(f) for f in files]!r}, Path({str(work)!r}), max_bytes=200 * 2**20)\n"
        "    message = ''\n"
        "except GliomasegError as err:\n"
        "    message = str(err)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest) across exec
        "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "print(json.dumps([message, int(peak.split()[1]) // 1024]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    message, peak = json.loads(done.stdout.strip().splitlines()[-1])
    return message, peak


BOMBS = [
    (
        "pixel-bomb-png",
        lambda d: [pixel_bomb_png(d / "bomb.png", 12000)],
        r"bomb\.png: 12000 x 12000 = 144,000,000 pixels, over the limit of 4,194,304 \(--max-slice-pixels\).*"
        r"gliomaseg serve --max-slice-pixels N",
    ),
    (
        "zip-of-5000-slices",
        lambda d: [many_slices_zip(d / "slices.zip", 5000)],
        r"slices\.zip: holds 5,000 files, over the 2,064 that --max-slices 1,024 allows.*gliomaseg serve --max-slices",
    ),
    (
        "scaled-nifti",
        lambda d: [scaled_nifti_bomb(d / "scaled.nii.gz", (460, 460, 460))],
        r"scaled\.nii\.gz: 460 x 460 x 460 = 97,336,000 voxels, over the limit of 16,777,216 \(--max-voxels\)",
    ),
]


@pytest.mark.parametrize(("name", "make", "message"), BOMBS, ids=[b[0] for b in BOMBS])
def test_web_bombs_are_refused_before_decoding_in_bounded_memory(name, make, message, tmp_path):
    files = make(tmp_path)
    assert sum(f.stat().st_size for f in files) < 1_000_000  # tiny on disk
    text, peak_mb = _read_upload_in_child(files, tmp_path / "work")
    assert re.search(message, text.replace("predict", "serve")), text
    assert peak_mb < MAX_CHILD_RSS_MB, f"{name}: the reader peaked at {peak_mb} MB"
    assert not list((tmp_path / "work").rglob("*.png"))  # nothing extracted from the zip


def test_nifti_size_counts_the_dtype_nibabel_returns(tmp_path):
    """Stored uint8 with scl_slope comes back as float64 (8 bytes a voxel), and is counted so."""
    path = scaled_nifti_bomb(tmp_path / "s.nii.gz", (40, 40, 4))
    shape, stored, returned = nifti_decoded_size(path)
    assert shape == (40, 40, 4) and stored == np.uint8 and returned == np.float64
    assert np.asanyarray(nib.load(str(path)).dataobj).dtype == returned


@pytest.mark.parametrize(
    ("dtype", "refused"),
    [(np.float64, True), (np.float32, False), (np.uint8, False)],
)
def test_decoded_bytes_over_the_voxel_budget_are_refused(dtype, refused, model_file, tmp_path, capsys):
    # 40 x 40 x 4 voxels x 3 channels: float64 is 24 bytes a voxel, over the 12 the budget allows
    data = np.random.default_rng(0).normal(100, 20, (40, 40, 4, 3)).astype(dtype)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    argv = ["predict", "--model", model_file(), tmp_path / "v.nii.gz", "--out", tmp_path / "out", "--no-overlays"]
    status, _, err = _run([*argv, "--max-voxels", 40 * 40 * 4], capsys)
    if refused:
        line = _error_line(err, "predict")
        assert status == 2 and re.search(r"v\.nii\.gz: its data decode to 0 MB \(19,200 values of float64\)", line)
        assert "--max-voxels 6,400 allows (12 bytes a voxel)" in line and "gliomaseg predict --max-voxels N" in line
    else:
        assert status == 0, err


@pytest.mark.parametrize(
    ("flag", "value", "make", "message"),
    [
        (
            "--max-slice-pixels",
            1000,
            lambda d: write_image(d / "s.png", np.zeros((40, 40), np.uint8)),
            r"s\.png: 40 x 40 = 1,600 pixels, over the limit of 1,000 \(--max-slice-pixels\)",
        ),
        (
            "--max-slices",
            3,
            lambda d: (
                [write_image(d / "P" / f"P_{n}.png", np.zeros((32, 32), np.uint8)) for n in range(1, 5)][0].parent
            ),
            r"P: 4 slices of 'P', over the limit of 3 \(--max-slices\)",
        ),
        (
            "--max-voxels",
            5000,
            lambda d: (
                nib.save(nib.Nifti1Image(np.zeros((40, 40, 4), np.float32), np.eye(4)), d / "v.nii") or d / "v.nii"
            ),
            r"v\.nii: 40 x 40 x 4 = 6,400 voxels, over the limit of 5,000 \(--max-voxels\)",
        ),
    ],
)
def test_predict_names_the_limit_and_its_flag_and_the_flag_raises_it(
    flag, value, make, message, model_file, tmp_path, capsys
):
    (tmp_path / "in").mkdir()
    path = make(tmp_path / "in")
    argv = ["predict", "--model", model_file(), path, "--out", tmp_path / "out", "--no-overlays"]
    status, _, err = _run([*argv, flag, value], capsys)
    line = _error_line(err, "predict")
    assert status == 2 and re.search(message, line) and f"gliomaseg predict {flag} N" in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))
    status, _, err = _run([*argv, flag, value * 10], capsys)  # raised: accepted
    assert status == 0, err


def test_a_truth_bomb_is_refused_before_decoding(model_file, tmp_path):
    from gliomaseg.web.truth import read_truth
    from gliomaseg.web.uploads import load_upload

    scan = load_upload([write_image(tmp_path / "s.png", np.zeros((32, 32), np.uint8))], tmp_path / "w", max_bytes=2**20)
    bomb = pixel_bomb_png(tmp_path / "s_mask.png", 12000)
    with pytest.raises(
        GliomasegError, match=r"s_mask\.png: ground truth is 12000 x 12000 but the scan's slices are 32"
    ):
        read_truth([bomb], scan, max_bytes=2**20)


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_bad_limits_are_refused(value):
    with pytest.raises(GliomasegError, match=r"--max-voxels .*: must be a whole number >= 1"):
        Limits(max_voxels=value)


# ------------------------------------------------------------------------------ model files, run once
def _maxpool_appended(onnx_file: Path, target: Path) -> Path:
    """``onnx_file`` with a 2 x 2 max-pool after its logits, still declaring full-size logits."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_file))
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["logits_full" if o == "logits" else o for o in node.output]
    graph.node.append(helper.make_node("MaxPool", ["logits_full"], ["logits"], kernel_shape=[2, 2], strides=[2, 2]))
    onnx.checker.check_model(model)  # a valid graph, and its declared output is unchanged
    onnx.save(model, str(target))
    return target


def test_an_onnx_whose_real_output_is_smaller_than_declared_is_refused(onnx_file, phantoms, tmp_path, capsys):
    from gliomaseg.inference.onnx_check import check_onnx_model

    bad = _maxpool_appended(onnx_file, tmp_path / "pooled.onnx")
    check_onnx_model(bad)  # the declared interface passes: only a run shows the lie
    patient = next(p for p in phantoms.iterdir() if p.is_dir())
    status, _, err = _run(["predict", "--model", bad, patient, "--out", tmp_path / "out"], capsys)
    line = _error_line(err, "predict")
    assert status == 2 and str(bad) in line
    assert "the model gives 2 x 1 x 16 x 16 instead of 2 x 1 x 32 x 32" in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_a_model_whose_output_is_not_full_size_is_refused(model_file, tmp_path):
    from gliomaseg.checkpoint import load_model

    net, _ = load_model(model_file())

    def pooled(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.max_pool2d(net(x), 2)

    def full(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    check_output_shape(full, tmp_path / "m.pt", 32)
    with pytest.raises(GliomasegError, match=r"m\.pt: run on a 2 x 3 x 32 x 32 input, the model gives 2 x 1 x 16 x 16"):
        check_output_shape(pooled, tmp_path / "m.pt", 32)


# ---------------------------------------------------------------------------------------- configs
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    + "lr: *i\n"
)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bomb.yaml", ALIAS_BOMB, r"not valid YAML \(more than 16 aliases \(\*name\); a settings file needs none"),
        ("big.toml", "features = 100000000\n", r"features=100000000: must be in \[1, 512\]"),
        ("batch.yaml", "batch_size: 100000000\n", r"batch_size=100000000: must be in \[1, 4096\]"),
        ("size.yaml", "size: 65536\n", r"size=65536: must be in \[32, 2048\]"),
        ("epochs.yaml", "epochs: 10000000\n", r"epochs=10000000: must be in \[1, 100000\]"),
        (
            "lr.yaml",
            "lr: [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]\n",
            r"lr=\[\[1, 2\], \[3, 4\], \[5, 6\], \[7, 8\], \.\.\.\]: exp",
        ),
        (
            "memory.yaml",
            "features: 512\nsize: 2048\nbatch_size: 4096\n",
            r"training would need about [\d,.]+ GB \([\d,]+ parameters, and the activations of 4096 slice\(s\) of "
            r"2048 x 2048\), more than the [\d,.]+ GB of this machine; lower --features, --size or --batch-size",
        ),
    ],
)
def test_a_config_over_its_bounds_is_one_line_before_allocation(name, text, message, tmp_path):
    from gliomaseg.training.config import resolve_config

    assert len(ALIAS_BOMB) < 1500
    (tmp_path / name).write_text(text)
    with pytest.raises(GliomasegError, match=message) as info:
        resolve_config(config_file=tmp_path / name)
    assert len(str(info.value)) < 400  # a hostile value is never expanded into the message


# ------------------------------------------------------------------------------------ small cases
def test_a_folder_without_a_model_file_says_so(phantoms, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("lr: 0.001\n")
    patient = next(p for p in phantoms.iterdir() if p.is_dir())
    status, _, err = _run(["predict", "--model", tmp_path / "run", patient, "--out", tmp_path / "out"], capsys)
    line = _error_line(err, "predict")
    assert status == 2 and f"{tmp_path / 'run'} is a folder and holds no model file (.pt or .onnx)" in line, line
    assert "does not exist" not in line


def test_a_fifo_as_input_or_model_says_what_it_is(model_file, tmp_path, capsys):
    os.mkfifo(tmp_path / "scan.png")
    status, _, err = _run(
        ["predict", "--model", model_file(), tmp_path / "scan.png", "--out", tmp_path / "out"], capsys
    )
    line = _error_line(err, "predict")
    assert status == 2 and f"{tmp_path / 'scan.png'}: it is a FIFO (named pipe), not a file or folder" in line, line
    os.mkfifo(tmp_path / "model.pt")
    status, _, err = _run(
        ["predict", "--model", tmp_path / "model.pt", tmp_path / "scan.png", "--out", tmp_path / "o"], capsys
    )
    assert status == 2 and "model.pt is a FIFO (named pipe), not a model file" in _error_line(err, "predict")


def _zero_pixdim_nifti(path: Path) -> Path:
    """A NIfTI with pixdim 0 and no qform/sform (an all-zero affine), written byte by byte: nibabel itself
    would replace a pixdim of 0 by 1 when saving."""
    data = np.random.default_rng(0).normal(100, 20, (40, 40, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])), check=False)
    header["pixdim"][1:4] = 0
    header["qform_code"], header["sform_code"] = 0, 0
    for row in ("srow_x", "srow_y", "srow_z"):
        header[row] = 0
    raw[:348] = header.binaryblock
    path.write_bytes(bytes(raw))
    return path


def test_a_nifti_without_voxel_size_is_warned_and_counted_in_voxels(model_file, tmp_path, capsys, caplog):
    import pandas as pd

    path = _zero_pixdim_nifti(tmp_path / "v.nii")
    with caplog.at_level(logging.WARNING):
        status, _, err = _run(["predict", "--model", model_file(bias=10.0), path, "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    assert "v.nii: the header gives no voxel size" in caplog.text and "reported in voxels, not mm^3" in caplog.text
    row = pd.read_csv(tmp_path / "out" / "areas.csv").iloc[0]
    assert row["tumour_pixels"] == 40 * 40 * 4 and np.isnan(row["voxel_mm3"]) and np.isnan(row["tumour_mm3"])


def test_serving_on_every_address_warns_that_the_page_has_no_login():
    from gliomaseg.web.server import no_login_warning

    warning = no_login_warning("0.0.0.0")
    assert warning is not None and "anyone who can reach this machine" in warning and "no login" in warning
    assert no_login_warning("127.0.0.1") is None and no_login_warning("::1") is None
