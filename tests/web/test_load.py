"""The load test's short form (benchmarks/load_web.py): concurrent clients against a real ``gliomaseg serve``."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio_client", reason="the web viewer needs the web extra: pip install -e '.[web]'")

from benchmarks.load_web import RETURN_MARGIN_MB, run_load  # noqa: E402 - after the skip


def test_concurrent_good_and_bad_uploads_get_right_answers_and_the_server_cleans_up() -> None:
    report = run_load(clients=2, requests=5, features=4, size=32, bad_share=0.3, seed=1, leaving_sessions=4)
    assert report["requests"] == 10 and report["good"] > 0 and report["bad"] > 0
    # every good upload got predict's mask, every bad one its message
    assert report["errors"] == 0, report["error_examples"]
    server = report["server"]
    assert server["scan_folders_left"] == 0  # every session's scan is freed when its client leaves
    assert server["temp_folder_removed"], server["log_tail"]
    assert server["loopback_only"]
    # SIGTERM stops it as an operator's stop, not as a keyboard interruption (Gradio's own message)
    assert not any("Keyboard interruption" in line for line in server["log_tail"]), server["log_tail"]
    assert server["log_tail"][-1] == "gliomaseg serve: stopped", server["log_tail"]
    assert server["exit_code"] == 0
    assert 0 < report["latency_s"]["p50"] <= report["latency_s"]["p95"] <= report["latency_s"]["max"]
    # memory before, during and after: back within 200 MB of the baseline once the clients left (four of
    # them held 256 x 256 x 128 volumes: a server that kept each session's scan would be ~300 MB above it)
    assert server["rss_baseline_mb"] > 0 and server["rss_during_max_mb"] > 0
    assert server["rss_returned"], (server["rss_baseline_mb"], server["rss_after_clients_left_mb"])
    assert server["rss_after_clients_left_mb"] <= server["rss_baseline_mb"] + RETURN_MARGIN_MB
