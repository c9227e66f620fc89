"""The load test's short form (benchmarks/load_web.py): concurrent clients against a real ``gliomaseg serve``."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio_client", reason="the web viewer needs the web extra: pip install -e '.[web]'")

from benchmarks.load_web import run_load  # noqa: E402 - after the skip


def test_concurrent_good_and_bad_uploads_get_right_answers_and_the_server_cleans_up() -> None:
    report = run_load(clients=2, requests=5, features=4, size=32, bad_share=0.3, seed=1)
    assert report["requests"] == 10 and report["good"] > 0 and report["bad"] > 0
    # every good upload got predict's mask, every bad one its message
    assert report["errors"] == 0, report["error_examples"]
    server = report["server"]
    assert server["scan_folders_left"] <= 2  # one per session: a refused upload keeps nothing
    assert server["temp_folder_removed"], server["log_tail"]
    assert server["loopback_only"]
    # SIGTERM stops it as an operator's stop, not as a keyboard interruption (Gradio's own message)
    assert not any("Keyboard interruption" in line for line in server["log_tail"]), server["log_tail"]
    assert server["log_tail"][-1] == "gliomaseg serve: stopped", server["log_tail"]
    assert server["exit_code"] == 0
    assert 0 < report["latency_s"]["p50"] <= report["latency_s"]["p95"] <= report["latency_s"]["max"]
