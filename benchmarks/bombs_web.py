"""Hostile uploads against a real ``gliomaseg serve``: the server's peak memory for each, and memory kept per session.

Usage (from the repository root)::

    python -m benchmarks.bombs_web [--out FILE.json] [--pixel-side 12000]

Each bomb is small on disk and made on the fly (the tests use the same builders, at the same or
smaller sizes): a 1-bit PNG of PIXEL_SIDE x PIXEL_SIDE pixels, a zip of 5000 small slices, a
``.nii.gz`` declaring 97 M voxels of uint8 that nibabel returns as float64 (``scl_slope`` set);
then, for the bound, the largest scans the default limits accept (256 x 256 x 256 uint8, the same
with three float32 channels, four slices of 2048 x 2048).
For each, a fresh server (the default limits, 200 MB uploads) gets the one upload through
Gradio's client; the report gives the server's resident memory after start, its peak (``VmHWM``)
and the answer. Then one server gets five sessions in turn, each uploading a 256 x 256 x 64 NIfTI
volume and leaving; its resident memory after each is the *kept per session* figure. Run it on
an older checkout (``PYTHONPATH=OLD/src``) for the figures before a fix.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, machine_info

__all__ = ["many_slices_zip", "pixel_bomb_png", "run_bombs", "scaled_nifti_bomb"]

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bombs_web.json"


def pixel_bomb_png(path: Path, side: int = 12000) -> Path:
    """A 1-bit all-black PNG of ``side`` x ``side`` pixels (about 17 KB at 12000)."""
    from PIL import Image

    Image.new("1", (side, side)).save(path)
    return path


def many_slices_zip(path: Path, n: int = 5000, side: int = 128) -> Path:
    """A zip of one patient folder of ``n`` blank ``side`` x ``side`` PNG slices (about 850 KB at 5000)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(1, n + 1):
            archive.writestr(f"P/P_{i}.png", buffer.getvalue())
    return path


def scaled_nifti_bomb(path: Path, shape: tuple[int, ...] = (460, 460, 460), slope: float = 2.0) -> Path:
    """A ``.nii.gz`` of zeros stored as uint8 with ``scl_slope`` set (nibabel returns float64): the
    data are streamed into the gzip file in chunks, so building it never holds them in memory."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(slope, 0.0)
    header.set_zooms((1.0,) * len(shape))
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    offset = int(header["vox_offset"]) or 352
    chunk = bytes(1 << 20)
    remaining = int(np.prod(shape, dtype=np.int64))
    with gzip.open(path, "wb", compresslevel=9) as f:
        header.write_to(f)
        f.write(bytes(offset - header.sizeof_hdr))  # the extension flag and padding up to vox_offset
        while remaining > 0:
            f.write(chunk[: min(len(chunk), remaining)])
            remaining -= len(chunk)
    return path


def _float_volume(path: Path, shape: tuple[int, ...]) -> Path:
    """A float32 NIfTI of blocks (compresses to little), for the largest decoded size the limits accept."""
    import nibabel as nib

    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    block = ((x // 16 + y // 16 + z // 4) % 8 * 32).astype(np.float32)
    data = np.broadcast_to(block[..., None], shape).copy() if len(shape) == 4 else block
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _big_slices(folder: Path, n: int, side: int) -> list[Path]:
    """``n`` slices ``P_<k>.png`` of ``side`` x ``side`` (the largest slices the limits accept)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    x, y = np.ogrid[:side, :side]
    image = Image.fromarray(((x // 32 + y // 32) % 8 * 32).astype(np.uint8))
    paths = [folder / f"P_{k}.png" for k in range(1, n + 1)]
    for path in paths:
        image.save(path)
    return paths


def _session_volume(path: Path) -> Path:
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.normal(100, 20, (256, 256, 64)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.9, 0.9, 3.0, 1.0])), path)
    return path


def _upload(url: str, files: list[Path]) -> tuple[str, float]:
    """One session, one upload, then the client leaves; returns (status text, seconds)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    t0 = time.perf_counter()
    try:
        answer = client.predict(
            1, 0.5, 0, False, False, False, [handle_file(str(p)) for p in files], None, api_name="/new_scan"
        )
        status = str(answer[0]) or "ok (a mask)"
    except Exception as err:  # noqa: BLE001 - a refused upload can surface as the client's exception
        status = f"{type(err).__name__}: {err}"
    finally:
        client.close()
    return status, round(time.perf_counter() - t0, 1)


def _one_bomb(model: Path, files: list[Path]) -> dict[str, Any]:
    from benchmarks.load_web import _launch, _memory_kb, _stop, _wait_ready

    server = _launch(model, 200.0)
    report: dict[str, Any] = {"server": {}}
    try:
        _wait_ready(server, wait_s=180)
        start = _memory_kb(server.proc.pid)
        status, seconds = _upload(server.url, files)
        end = _memory_kb(server.proc.pid)
        report.update(
            rss_after_start_mb=round(start["VmRSS"] / 1024),
            peak_mb=round(end["VmHWM"] / 1024),
            peak_increase_mb=round((end["VmHWM"] - start["VmRSS"]) / 1024),
            seconds=seconds,
            answer=" ".join(status.split())[:300],
        )
    finally:
        _stop(server, report)
    return {k: v for k, v in report.items() if k != "server"}


def _sessions(model: Path, volume: Path, n: int = 5, settle_s: float = 30.0) -> dict[str, Any]:
    from benchmarks.load_web import _launch, _memory_kb, _stop, _wait_ready

    server = _launch(model, 200.0)
    report: dict[str, Any] = {"server": {}}
    try:
        _wait_ready(server, wait_s=180)
        rss = [round(_memory_kb(server.proc.pid)["VmRSS"] / 1024)]
        for _ in range(n):
            _upload(server.url, [volume])
            time.sleep(settle_s)  # the server learns of the closed session from its heartbeat stream
            rss.append(round(_memory_kb(server.proc.pid)["VmRSS"] / 1024))
        report.update(rss_mb_after_each_session=rss, peak_mb=round(_memory_kb(server.proc.pid)["VmHWM"] / 1024))
    finally:
        _stop(server, report)
    return {k: v for k, v in report.items() if k != "server"}


def run_bombs(pixel_side: int = 12000, sessions: int = 5) -> dict[str, Any]:
    """Build the bombs, run each against a fresh server, then the sessions test; returns the report."""
    from benchmarks.load_web import _default_model, _large_volume

    with tempfile.TemporaryDirectory(prefix="gliomaseg-bombs-") as tmp:
        folder = Path(tmp)
        model = _default_model(folder, features=16, size=128)
        bombs = {
            f"pixel-bomb-png-{pixel_side}": [pixel_bomb_png(folder / "bomb.png", pixel_side)],
            "zip-of-5000-slices": [many_slices_zip(folder / "slices.zip")],
            "scaled-nifti-460^3-uint8": [scaled_nifti_bomb(folder / "scaled.nii.gz")],
            # not a bomb: the largest scan the default limits accept (2**24 voxels), for the bound on memory
            "largest-accepted-256^3-uint8": [_large_volume(folder / "large" / "large.nii.gz", (256, 256, 256))],
            "largest-accepted-256^3x3-float32": [_float_volume(folder / "float" / "large.nii.gz", (256, 256, 256, 3))],
            "largest-accepted-4-slices-2048^2": _big_slices(folder / "slices", 4, 2048),
        }
        report: dict[str, Any] = {"machine": machine_info(), "bombs": {}}
        for name, files in bombs.items():
            report["bombs"][name] = {"bytes_on_disk": sum(p.stat().st_size for p in files), **_one_bomb(model, files)}
            print(name, report["bombs"][name], flush=True)
        report["sessions"] = _sessions(model, _session_volume(folder / "session.nii.gz"), sessions)
        print("sessions", report["sessions"], flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixel-side", type=int, default=12000, help="side of the 1-bit PNG bomb")
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run_bombs(args.pixel_side, args.sessions)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
