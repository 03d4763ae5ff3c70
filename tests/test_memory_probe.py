"""``LEDGER_MEMORY_PROBE``: a process that is told ``kill -USR1`` writes what it holds."""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from pathlib import Path

import pytest

from api import memory_probe
from ledger.application import VoucherLedger
from tests.conftest import issue, open_worked_example


@pytest.mark.parametrize("frames", [0, 2])
def test_sigusr1_writes_the_caches_allocators_and_a_snapshot_that_compares(
    memory_app: VoucherLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: int
) -> None:
    """Without tracing (0 frames): the caches, glibc's and Python's allocators; with it, a
    tracemalloc snapshot too (Python then reports no arenas: tracemalloc wraps the allocator)."""
    open_worked_example(memory_app)
    issue(memory_app)
    monkeypatch.setenv(memory_probe.PROBE_ENV, str(tmp_path))
    monkeypatch.setenv(memory_probe.FRAMES_ENV, str(frames))
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        memory_probe.install()
        for _ in range(2):
            before = len(list(tmp_path.glob("*.txt")))
            os.kill(os.getpid(), signal.SIGUSR1)
            deadline = time.monotonic() + 30
            while len(list(tmp_path.glob("*.txt"))) == before and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        tracemalloc.stop()  # a no-op when it did not start
    texts = sorted(tmp_path.glob("*.txt"))
    snaps = sorted(tmp_path.glob("*.snap"))
    assert len(texts) == 2
    text = texts[0].read_text()
    assert text.startswith("rss_kb ")
    assert "writer cache: " in text and "Voucher 1 x " in text  # the aggregates by class
    assert "glibc: in use" in text and "live objects by type:" in text
    if frames == 0:
        assert "# arenas allocated current" in text and not snaps
    else:
        assert "top lines:" in text and len(snaps) == 2
        memory_probe.compare(str(snaps[0]), str(snaps[1]))  # loads both: they are snapshots
