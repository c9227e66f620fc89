"""The scans held per session (web/sessions.py): freed when a session ends, bounded across sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gliomaseg.data.io import write_image
from gliomaseg.web.analysis import Analysis
from gliomaseg.web.sessions import SessionStore
from gliomaseg.web.uploads import load_upload

pytest.importorskip("gradio", reason="the web viewer needs the web extra")


@pytest.fixture(scope="module")
def segmenter(model_file):
    from gliomaseg.inference.segmenter import load_segmenter

    return load_segmenter(model_file(), graph_fusion=False)


def _analysis(tmp_path: Path, name: str, segmenter, side: int = 64) -> Analysis:
    from gliomaseg.evaluation.postprocess import PostprocessConfig

    image = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    scan = load_upload([write_image(tmp_path / f"{name}.png", image)], tmp_path / name, max_bytes=2**24)
    analysis = Analysis(scan)
    analysis.update(segmenter, PostprocessConfig())
    return analysis


def test_a_sessions_scan_is_freed_when_it_ends(tmp_path, segmenter):
    store = SessionStore()
    analysis = _analysis(tmp_path, "a", segmenter)
    assert analysis.nbytes == 64 * 64 * (3 + 4 + 1)  # volume, probabilities, mask
    store.keep("s1", analysis)
    assert len(store) == 1 and store.nbytes == analysis.nbytes and analysis.scan.work.is_dir()
    store.drop("s1")
    assert len(store) == 0 and analysis.released and analysis.nbytes == 0
    assert analysis.scan.case.volume is None and analysis.result is None and not analysis.scan.work.exists()


def test_a_new_scan_of_a_session_releases_the_one_it_replaces(tmp_path, segmenter):
    store = SessionStore()
    first, second = _analysis(tmp_path, "a", segmenter), _analysis(tmp_path, "b", segmenter)
    store.keep("s1", first)
    store.keep("s1", first)  # the same scan again (a new threshold): kept
    assert not first.released
    store.keep("s1", second)
    assert first.released and not second.released and len(store) == 1


def test_sessions_over_the_budget_release_the_least_recently_used(tmp_path, segmenter):
    scans = [_analysis(tmp_path, f"s{i}", segmenter) for i in range(4)]
    store = SessionStore(budget_bytes=int(2.5 * scans[0].nbytes))
    for i, scan in enumerate(scans[:3]):
        store.keep(f"session{i}", scan)
    assert scans[0].released and not scans[1].released and not scans[2].released
    store.keep("session1", scans[1])  # session 1 is used again: session 2 is now the oldest
    store.keep("session3", scans[3])
    assert scans[2].released and not scans[1].released and not scans[3].released
    assert store.nbytes <= store.budget_bytes
    lone = SessionStore(budget_bytes=1)  # the scan just stored is always kept
    lone.keep("x", scans[3])
    assert len(lone) == 1 and not scans[3].released


def test_a_released_scan_asks_to_upload_again(tmp_path, segmenter):
    from gliomaseg.web.handlers import VIEW, Viewer

    viewer = Viewer(segmenter, tmp_path / "web", 2**20)
    analysis = _analysis(tmp_path, "a", segmenter)
    viewer.sessions.keep("s", analysis)
    viewer.sessions.drop("s")
    for handler in (viewer.settle, viewer.show_slice):
        view = handler(analysis, 1, 0.5, 0, False, False, False)
        assert "cleared from the server" in view[VIEW.index("status")] and view[VIEW.index("overlay")] is None


def test_a_broadcast_flair_counts_once_in_the_memory_budget():
    from gliomaseg.web.analysis import _held_bytes

    flair = np.zeros((4, 30, 20, 1), np.uint8)
    assert _held_bytes(np.broadcast_to(flair, (4, 30, 20, 3))) == 4 * 30 * 20
    assert _held_bytes(np.zeros((4, 30, 20, 3), np.uint8)) == 4 * 30 * 20 * 3
