"""Load test of the web viewer: concurrent clients on loopback, good and bad uploads mixed.

Usage (from the repository root, after ``make setup``)::

    python -m benchmarks.load_web [--clients 8] [--requests 50] [--model best.pt] [--out FILE.json]
    python -m benchmarks.load_web --quick     # 2 clients x 5 requests, a tiny network (the test's form)

It starts ``gliomaseg serve`` on a free loopback port (a real, randomly initialised U-Net of the
``cpu`` preset's shape unless ``--model`` names one), then CLIENTS threads each send REQUESTS uploads
through Gradio's own client, i.e. the API the page itself calls. About a quarter of the uploads are
bad (corrupt, 16-bit, NaN voxels, over the size limit, a text file). Every good answer must carry
the mask that ``gliomaseg predict`` writes for the same file, every bad one its error message;
anything else counts as an error. The run is bounded in requests and in time (``--timeout-s``).

Writes (default ``benchmarks/results/load_web.json``) and prints: requests, errors, latency (with
the wait in the server's one-request-at-a-time queue), throughput, the server's memory from
``/proc/PID/status`` (peak ``VmHWM``; ``VmRSS`` before, during and after the run), the scan folders
left, and whether the server removed its temp folder on SIGTERM.

Memory before, during and after: the *baseline* is the server's resident memory once it has
served one warm-up client (one good upload; the client then leaves), so that what is loaded once
(libraries, the first request's caches) is not counted as kept; *after* is its resident memory
once every client has left (each closes its session, as a browser tab closing does) and the server
has freed their scans, waited for up to ``settle_s``. A server that keeps sessions' scans ends far
above its baseline.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, machine_info

__all__ = ["main", "run_load"]

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "load_web.json"
_MB = 2**20
#: After the clients leave, the server's resident memory must come back within this of its baseline.
RETURN_MARGIN_MB = 200


@dataclass
class Upload:
    """One kind of upload: its files, and the masks (good) or the message (bad) it must get back."""

    name: str
    files: list[Path]
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # mask file name -> mask, from predict
    message: str = ""  # regex of the page's error message

    @property
    def good(self) -> bool:
        return not self.message


def _uploads(folder: Path, size: int, max_upload_mb: float) -> list[Upload]:
    """Good uploads (a slice, three slices of one patient, a NIfTI volume) and bad ones, each in its own folder."""
    import cv2
    import nibabel as nib

    from gliomaseg.data.io import write_image
    from gliomaseg.data.phantoms import synthesise_volume

    def at(name: str, file: str) -> Path:
        (folder / name).mkdir(parents=True, exist_ok=True)
        return folder / name / file

    image, _ = synthesise_volume(np.random.default_rng(0), 4, size)
    slices = [write_image(at("volume", f"P_{n}.png"), image[n - 1]) for n in (1, 2, 3)]
    flair = np.moveaxis(image[..., 1], 0, 2).astype(np.float32)  # X x Y x Z
    nib.save(nib.Nifti1Image(flair, np.diag([0.9, 0.9, 3.0, 1.0])), at("nifti", "flair.nii.gz"))
    flair[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(flair, np.eye(4)), at("nan", "nan.nii.gz"))
    at("truncated", "broken.png").write_bytes(slices[0].read_bytes()[:120])
    cv2.imwrite(str(at("16-bit", "deep.png")), image[0].astype(np.uint16) * 257)
    at("text", "notes.txt").write_text("not a scan")
    side = int(np.sqrt(max_upload_mb * _MB / 3)) + 64  # incompressible noise: over the limit as a PNG
    noise = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return [
        Upload("slice", [write_image(at("slice", "slice.tif"), image[3])]),
        Upload("volume", slices),
        Upload("nifti", [folder / "nifti" / "flair.nii.gz"]),
        Upload("truncated", [folder / "truncated" / "broken.png"], message=r"broken\.png: unreadable or truncated"),
        Upload("16-bit", [folder / "16-bit" / "deep.png"], message=r"deep\.png: 16-bit samples"),
        Upload("nan", [folder / "nan" / "nan.nii.gz"], message=r"nan\.nii\.gz: 1 NaN and 0 infinite voxel"),
        Upload("text", [folder / "text" / "notes.txt"], message=r"notes\.txt: unsupported file type"),
        Upload("too-large", [write_image(at("too-large", "huge.png"), noise)], message=r"(limit|too large|exceed)"),
    ]


def _read_masks(path: Path) -> dict[str, np.ndarray]:
    """Mask files by name: one image or NIfTI file, or the members of a zip of slice masks."""
    import nibabel as nib

    from gliomaseg.data.io import read_mask

    if path.suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(path) as archive:
            archive.extractall(tmp)
            return {p.name: read_mask(p) for p in Path(tmp).iterdir()}
    if path.name.endswith((".nii", ".nii.gz")):
        return {path.name: np.asarray(nib.load(str(path)).dataobj).astype(np.uint8)}
    return {path.name: read_mask(path)}


def _expected(model: Path, uploads: list[Upload], folder: Path) -> None:
    """Fill each good upload's masks with what ``predict`` writes for the same files."""
    from gliomaseg.inference.predict import predict_inputs
    from gliomaseg.inference.segmenter import load_segmenter

    segmenter = load_segmenter(model)  # as the server loads it
    for upload in (u for u in uploads if u.good):
        source = upload.files[0] if len(upload.files) == 1 else upload.files[0].parent
        predict_inputs(segmenter, [source], folder / upload.name, overlays=False)
        for path in (folder / upload.name).rglob("*_mask*"):
            upload.masks.update(_read_masks(path))


def _default_model(folder: Path, features: int, size: int) -> Path:
    import torch

    from gliomaseg.checkpoint import save_checkpoint
    from gliomaseg.training.models import create_model

    torch.manual_seed(0)
    meta = {
        "model": {"name": "unet", "kwargs": {"features": features}},
        "preprocess": {"size": size, "normalisation": "zscore"},
        "postprocess": {"threshold": 0.5},
    }
    return save_checkpoint(folder / "model.pt", create_model("unet", features=features), meta)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak resident set) of a process, in kB."""
    lines = (line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(value.split()[0]) for key, value in lines if key in ("VmRSS", "VmHWM")}


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    tmp_root: Path | None = None
    loopback_only: bool = False
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None


def _launch(model: Path, max_upload_mb: float) -> Server:
    """Start ``gliomaseg serve`` (it boots while the caller prepares; see :func:`_wait_ready`)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "gliomaseg.cli", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--max-upload-mb", str(max_upload_mb)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Server(proc, f"http://127.0.0.1:{port}/")


def _wait_ready(server: Server, wait_s: float) -> None:
    first = server.proc.stdout.readline()  # type: ignore[union-attr]
    started = re.search(r"kept in (\S+) \(removed on exit\)", first)
    if not started:
        server.proc.kill()
        raise RuntimeError(f"gliomaseg serve did not start: {first}{server.proc.stdout.read()}")  # type: ignore[union-attr]
    server.tmp_root = Path(started.group(1))
    server.loopback_only = "loopback only" in first  # the default bind address
    # Drained all along: a full pipe would stall the server.
    server.drain = threading.Thread(
        target=lambda: server.log.extend(iter(server.proc.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    server.drain.start()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(server.url, timeout=5):
                return
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gliomaseg serve did not answer") from None
            time.sleep(0.2)


def _check(upload: Upload, answer: tuple[Any, ...] | None, failure: str) -> str | None:
    """None if the answer is right for the upload, else what is wrong with it."""
    status = failure if answer is None else str(answer[0])
    if not upload.good:
        return None if re.search(upload.message, status.replace("&#x27;", "'")) else f"no message: {status[:300]}"
    if answer is None or "gs-error" in status:
        return f"a good upload failed: {status[:300]}"
    got: dict[str, np.ndarray] = {}
    for path in answer[-1] or []:
        if "_mask" in Path(path).name:
            got.update(_read_masks(Path(path)))
    if set(got) != set(upload.masks):
        return f"mask files {sorted(got)}, expected {sorted(upload.masks)}"
    wrong = [name for name in got if not np.array_equal(got[name] > 0, upload.masks[name] > 0)]
    return f"masks differ from predict's: {wrong}" if wrong else None


def _client(url: str, schedule: list[Upload], deadline: float, folder: Path, records: list[dict[str, Any]]) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=str(folder))
    try:
        _send(client, schedule, deadline, records)
    finally:
        client.close()  # the session ends, as when a browser tab closes: the server frees its scan


def _send(client: Any, schedule: list[Upload], deadline: float, records: list[dict[str, Any]]) -> None:
    from gradio_client import handle_file

    for upload in schedule:
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        answer, failure = None, ""
        try:
            files = [handle_file(str(p)) for p in upload.files]
            answer = client.predict(1, 0.5, 0, False, False, False, files, None, api_name="/new_scan")
        except Exception as err:  # noqa: BLE001 - a refused upload surfaces as the client's exception
            failure = f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - t0
        problem = _check(upload, answer, failure)
        records.append({"upload": upload.name, "good": upload.good, "seconds": seconds, "problem": problem})


def _schedules(uploads: list[Upload], clients: int, requests: int, bad_share: float, seed: int) -> list[list[Upload]]:
    rng = np.random.default_rng(seed)
    good, bad = [u for u in uploads if u.good], [u for u in uploads if not u.good]
    pick = [(bad if rng.random() < bad_share else good) for _ in range(clients * requests)]
    chosen = [kind[rng.integers(len(kind))] for kind in pick]
    return [chosen[i * requests : (i + 1) * requests] for i in range(clients)]


def _sample_rss(
    server: Server, records: list[dict[str, Any]], samples: list[tuple[int, int]], clients: list[threading.Thread]
) -> None:
    while any(c.is_alive() for c in clients) or not samples:
        samples.append((len(records), _memory_kb(server.proc.pid)["VmRSS"]))
        time.sleep(0.25)


def _rss_by_progress(samples: list[tuple[int, int]], total: int) -> dict[str, float]:
    """The server's resident memory when a quarter, half, ... of the requests were answered: a leak
    grows with the count, a bounded server levels off."""
    out = {}
    for share in (0.25, 0.5, 0.75, 1.0):
        reached = [kb for done, kb in samples if done >= share * total] or [samples[-1][1]]
        out[f"{round(share * 100)}%"] = round(reached[0] / 1024, 1)
    return out


def _rss_mb(server: Server) -> float:
    return round(_memory_kb(server.proc.pid)["VmRSS"] / 1024, 1)


def _settle(server: Server, target_mb: float, settle_s: float) -> tuple[float, float]:
    """Wait until the server has released every session's scan (no scan folder left: the clients are
    gone) and its resident memory is at most ``target_mb``, or ``settle_s`` passed.

    Returns:
        ``(rss_mb, seconds waited)``.
    """
    t0 = time.monotonic()
    work = server.tmp_root / "work" if server.tmp_root is not None else None
    while True:
        rss = _rss_mb(server)
        released = work is None or not work.is_dir() or not any(work.iterdir())
        if (released and rss <= target_mb) or time.monotonic() - t0 > settle_s:
            return rss, round(time.monotonic() - t0, 1)
        time.sleep(0.5)


def _large_volume(path: Path, shape: tuple[int, int, int]) -> Path:
    """A uint8 NIfTI volume of blocks: tens of MB held per session, about 100 KB as .nii.gz."""
    import nibabel as nib

    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    data = ((x // 16 + y // 16 + z // 4) % 8 * 32).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([0.9, 0.9, 3.0, 1.0])), path)
    return path


def _leaving_sessions(server: Server, volume: Path, n: int, folder: Path) -> list[dict[str, Any]]:
    """``n`` sessions in turn, each uploading ``volume`` and leaving: what a server keeps per session adds up."""
    records: list[dict[str, Any]] = []
    upload = Upload("large", [volume])
    for i in range(n):
        _client(server.url, [upload], time.monotonic() + 300, folder / f"session{i}", records)
    # Its masks are not compared with predict's (the main run does that): only a failed upload counts.
    return [r for r in records if (r["problem"] or "").startswith("a good upload failed")]


def _warm_up(server: Server, uploads: list[Upload], folder: Path, settle_s: float) -> None:
    """One client, one good upload, then it leaves: what the first request loads stays out of the baseline."""
    _client(server.url, [next(u for u in uploads if u.good)], time.monotonic() + 120, folder, [])
    time.sleep(min(settle_s, 20.0))  # the server learns of the closed session from its heartbeat stream


def _summary(records: list[dict[str, Any]], wall: float, clients: int, requests: int) -> dict[str, Any]:
    seconds = np.array([r["seconds"] for r in records]) if records else np.zeros(1)
    errors = [r for r in records if r["problem"]]
    return {
        "requests_planned": clients * requests,
        "requests": len(records),
        "good": sum(r["good"] for r in records),
        "bad": sum(not r["good"] for r in records),
        "errors": len(errors),
        "error_examples": [f"{r['upload']}: {r['problem']}" for r in errors[:5]],
        "latency_s": {
            "p50": round(float(np.percentile(seconds, 50)), 3),
            "p95": round(float(np.percentile(seconds, 95)), 3),
            "max": round(float(seconds.max()), 3),
        },
        "wall_s": round(wall, 2),
        "throughput_per_s": round(len(records) / wall, 2) if wall > 0 else None,
    }


def _stop(server: Server, report: dict[str, Any]) -> None:
    if server.proc.poll() is None and server.tmp_root is not None:
        memory = _memory_kb(server.proc.pid)
        files = [p for p in server.tmp_root.rglob("*") if p.is_file()]
        work = server.tmp_root / "work"
        report["server"].update(
            peak_rss_mb=round(memory["VmHWM"] / 1024, 1),
            rss_end_mb=round(memory["VmRSS"] / 1024, 1),
            scan_folders_left=len(list(work.iterdir())) if work.is_dir() else 0,
            temp_files_left=len(files),
            temp_mb=round(sum(p.stat().st_size for p in files) / _MB, 2),
        )
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    if server.drain is not None:
        server.drain.join(timeout=10)  # the server's last lines (what it said on stopping)
    report["server"]["exit_code"] = server.proc.returncode
    report["server"]["temp_folder_removed"] = server.tmp_root is not None and not server.tmp_root.exists()
    report["server"]["loopback_only"] = server.loopback_only
    report["server"]["log_tail"] = [line.rstrip() for line in server.log[-20:]]


def run_load(
    *,
    clients: int,
    requests: int,
    model: Path | None = None,
    features: int = 16,
    size: int = 128,
    bad_share: float = 0.25,
    max_upload_mb: float = 1.0,
    timeout_s: float = 600.0,
    seed: int = 0,
    settle_s: float = 60.0,
    leaving_sessions: int = 0,
    leaving_shape: tuple[int, int, int] = (256, 256, 128),
) -> dict[str, Any]:
    """Run the load test (see the module docstring) and return its report.

    Args:
        clients: concurrent clients (threads, one Gradio session each).
        requests: uploads per client.
        model: the model the server runs; default a random U-Net (``features``, trained ``size``).
        features: width of the default model.
        size: training size of the default model (its uploads are made at this size too).
        bad_share: share of bad uploads.
        max_upload_mb: the server's upload limit.
        timeout_s: stop sending after this many seconds.
        seed: the order of the uploads.
        settle_s: how long to wait, after the clients left, for the server's memory to come back
            within :data:`RETURN_MARGIN_MB` of its baseline.
        leaving_sessions: after the clients, this many sessions in turn each upload a large volume
            (``leaving_shape``, uint8) and leave: a server that keeps a session's scan after it ends
            grows by tens of MB with each.
        leaving_shape: ``X x Y x Z`` of that volume.

    Returns:
        The report (see the module docstring).
    """
    with tempfile.TemporaryDirectory(prefix="gliomaseg-load-") as tmp:
        folder = Path(tmp)
        model = model or _default_model(folder, features, size)
        server = _launch(model, max_upload_mb)
        report: dict[str, Any] = {
            "machine": machine_info(),
            "settings": {"clients": clients, "requests": requests, "bad_share": bad_share, "model": str(model)},
            "server": {},
        }
        try:
            uploads = _uploads(folder / "uploads", size, max_upload_mb)
            _expected(model, uploads, folder / "predict")  # while the server boots
            _wait_ready(server, wait_s=120)
            report["server"]["rss_after_start_mb"] = _rss_mb(server)
            _warm_up(server, uploads, folder / "warm-up", settle_s)
            baseline = report["server"]["rss_baseline_mb"] = _rss_mb(server)
            records: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout_s
            schedules = _schedules(uploads, clients, requests, bad_share, seed)
            threads = [
                threading.Thread(target=_client, args=(server.url, s, deadline, folder / f"client{i}", records))
                for i, s in enumerate(schedules)
            ]
            samples: list[tuple[int, int]] = []  # (requests answered, server RSS in kB)
            sampler = threading.Thread(target=_sample_rss, args=(server, records, samples, threads), daemon=True)
            t0 = time.perf_counter()
            for thread in threads:
                thread.start()
            sampler.start()
            for thread in threads:
                thread.join()
            sampler.join()
            report.update(_summary(records, time.perf_counter() - t0, clients, requests))
            report["server"]["rss_during_max_mb"] = round(max(kb for _, kb in samples) / 1024, 1)
            report["server"]["rss_by_progress_mb"] = _rss_by_progress(samples, len(records))
            if leaving_sessions:
                volume = _large_volume(folder / "large" / "large.nii.gz", leaving_shape)
                failed = _leaving_sessions(server, volume, leaving_sessions, folder / "leaving")
                report["server"]["leaving_sessions"] = {"sessions": leaving_sessions, "shape": list(leaving_shape)}
                report["errors"] += len(failed)
                report["error_examples"] += [f"large: {r['problem']}" for r in failed[:2]]
                report["server"]["rss_after_leaving_sessions_mb"] = _rss_mb(server)
            after, waited = _settle(server, baseline + RETURN_MARGIN_MB, settle_s)
            report["server"].update(rss_after_clients_left_mb=after, seconds_to_return=waited)
            report["server"]["rss_returned"] = after <= baseline + RETURN_MARGIN_MB
            step = max(1, len(samples) // 40)
            report["server"]["rss_trace"] = [[done, round(kb / 1024)] for done, kb in samples[::step]]
        finally:
            _stop(server, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 when any answer was wrong or the memory did not come back."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="uploads per client")
    parser.add_argument("--model", type=Path, help="model file (default: a random U-Net of the cpu preset's shape)")
    parser.add_argument("--bad-share", type=float, default=0.25)
    parser.add_argument("--max-upload-mb", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="2 clients x 5 requests on a tiny network")
    parser.add_argument(
        "--leaving-sessions", type=int, default=4, help="then this many sessions in turn upload a big volume and leave"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tiny = {"clients": 2, "requests": 5, "features": 4, "size": 32} if args.quick else {}
    settings = {"clients": args.clients, "requests": args.requests, **tiny}
    report = run_load(
        **settings,
        model=args.model,
        bad_share=args.bad_share,
        max_upload_mb=args.max_upload_mb,
        timeout_s=args.timeout_s,
        leaving_sessions=args.leaving_sessions,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lat, srv = report["latency_s"], report["server"]
    print(
        f"{report['requests']} requests ({report['good']} good, {report['bad']} bad) from {settings['clients']} "
        f"clients in {report['wall_s']} s: {report['errors']} errors; latency p50 {lat['p50']} s, p95 {lat['p95']} s, "
        f"max {lat['max']} s; server RSS {srv['rss_after_start_mb']} MB after start, baseline "
        f"{srv['rss_baseline_mb']} MB, during up to {srv['rss_during_max_mb']} MB, after the clients left "
        f"{srv['rss_after_clients_left_mb']} MB (in {srv['seconds_to_return']} s), peak {srv['peak_rss_mb']} MB; "
        f"temp folder removed: {srv['temp_folder_removed']}; report {args.out}"
    )
    return 1 if report["errors"] or not report["server"]["rss_returned"] else 0


if __name__ == "__main__":
    sys.exit(main())
