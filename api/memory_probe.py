"""What a served process holds in memory, on ``kill -USR1``: for finding what grows.

``LEDGER_MEMORY_PROBE=DIR`` starts tracemalloc (``LEDGER_MEMORY_PROBE_FRAMES`` frames, 8 unless
given) when the application starts; each SIGUSR1 then writes into DIR, named by the process id
and a counter, the tracemalloc snapshot (``.snap``, for ``tracemalloc.Snapshot.load``) and a
text summary (``.txt``): RSS, the sizes of the caches that have a bound, the live objects by type
(``gc``) and the 40 lines that allocated most. Comparing two of them, minutes apart, names what
grew (``python -m api.memory_probe OLD.snap NEW.snap``). Off unless the variable is set: tracing
costs time on every allocation."""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import signal
import sys
import tempfile
import threading
import tracemalloc
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

PROBE_ENV = "LEDGER_MEMORY_PROBE"
FRAMES_ENV = "LEDGER_MEMORY_PROBE_FRAMES"
TOP = 40
# The lines of ``sys._debugmallocstats`` about arenas and pools (the rest: free-list sizes).
_ARENA_LINES = ("#", *(f"{n} arenas" for n in range(10)), *(f"{n} unused" for n in range(10)))


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes of ``obj`` and of what it alone holds (containers, strings, numbers; not
    classes, functions or modules)."""
    pending, size = [obj], 0
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, type | ModuleType) or callable(item):
            continue
        seen.add(id(item))
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
        elif hasattr(item, "__dict__"):
            pending.append(vars(item))
        elif hasattr(item, "__slots__"):
            pending.extend(getattr(item, n) for n in item.__slots__ if hasattr(item, n))
    return size


def _by_class(objects: list[Any], sample: int = 50) -> str:
    """Count and mean deep size of each class among ``objects``."""
    groups: dict[str, list[Any]] = {}
    for obj in objects:
        groups.setdefault(type(obj).__name__, []).append(obj)
    parts = []
    for name, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        picked = members[:: max(1, len(members) // sample)][:sample]
        mean = sum(_deep_size(m, set()) for m in picked) // len(picked)
        parts.append(f"{name} {len(members)} x {mean} B")
    return ", ".join(parts)


def _bounded_caches() -> list[str]:
    """The length of every cache object of ours that ``gc`` can see."""
    from api.answers import AnswerCache
    from ledger.unit_of_work import AggregateCache

    lines = []
    for obj in gc.get_objects():
        if isinstance(obj, AggregateCache):
            with obj.lock:
                kept_aggregates, ids = list(obj._items.values()), len(obj._ids)
            lines.append(f"writer cache: {len(kept_aggregates)} aggregates, {ids} ids")
            lines.append("  " + _by_class(kept_aggregates))
        elif isinstance(obj, AnswerCache):
            lines.append(f"answer cache: {len(obj._answers)} answers, {obj.total_chars} chars")
        elif type(obj).__name__ == "ViewsFollower":
            lines.append(f"views follower: {len(obj._cache)} rows kept")
        elif type(obj).__name__ == "ReadRepository":
            cache = getattr(obj, "cache", None)
            if cache is None:
                continue
            with cache.lock:  # eventsourcing's LRUCache keeps links: [prev, next, key, value]
                kept = [link[3] for link in cache.cache.values()]
            lines.append(f"read repository cache: {len(kept)}")
            lines.append("  " + _by_class(kept))
    from ledger.ids import named_id

    lines.append(f"named_id: {named_id.cache_info()}")
    return lines


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_lines() -> list[str]:
    """glibc's malloc over all its arenas (mallinfo2), and Python's own small-object
    allocator (``sys._debugmallocstats``, which writes to file descriptor 2)."""
    lines = []
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        lines.append(
            f"glibc: in use {info.uordblks >> 20} MiB, free in arenas {info.fordblks >> 20} MiB, "
            f"arenas {info.arena >> 20} MiB, mmapped {info.hblkhd >> 20} MiB ({info.hblks})"
        )
    except (OSError, AttributeError) as exc:
        lines.append(f"glibc: {exc}")
    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        lines += [line.rstrip() for line in out if line.startswith(_ARENA_LINES)]
    return lines


def _anonymous_rss_kb() -> int:
    total, anonymous = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:
            anonymous = len(fields) == 5
        elif fields[0] == "Rss:" and anonymous:
            total += int(fields[1])
    return total


def dump(folder: Path, number: int) -> Path:
    stem = folder / f"{os.getpid()}-{number:03d}"
    gc.collect()
    by_type = Counter(type(o).__name__ for o in gc.get_objects())
    out = [f"rss_kb {_rss_kb()}", f"anonymous_rss_kb {_anonymous_rss_kb()}"]
    out += [f"threads {threading.active_count()}", *_bounded_caches(), *_malloc_lines()]
    out += ["", "live objects by type:"]
    out += [f"{count:>10} {name}" for name, count in by_type.most_common(TOP)]
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(str(stem.with_suffix(".snap")))
        current, peak = tracemalloc.get_traced_memory()
        out += ["", f"traced {current} bytes (peak {peak})", "top lines:"]
        out += [str(stat) for stat in snapshot.statistics("lineno")[:TOP]]
    if os.environ.get("LEDGER_MEMORY_PROBE_TRIM"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        out.insert(1, f"rss_kb after malloc_trim {_rss_kb()}")
    stem.with_suffix(".txt").write_text("\n".join(out) + "\n")
    return stem


def install() -> None:
    """Start tracing and answer SIGUSR1, if ``LEDGER_MEMORY_PROBE`` names a folder."""
    folder = os.environ.get(PROBE_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get(FRAMES_ENV, "8"))
    if frames > 0:  # 0: no tracing, only the counts
        tracemalloc.start(frames)
    numbers = itertools.count(1)

    def on_signal(signum: int, frame: Any) -> None:
        # In a thread of its own: the handler runs on the event loop's thread, which must go on.
        threading.Thread(target=dump, args=(Path(folder), next(numbers)), daemon=True).start()

    signal.signal(signal.SIGUSR1, on_signal)


def compare(old: str, new: str) -> None:
    """The allocation sites that grew most between two snapshots, by traceback."""
    before = tracemalloc.Snapshot.load(old)
    after = tracemalloc.Snapshot.load(new)
    for stat in after.compare_to(before, "traceback")[:TOP]:
        print(f"{stat.size_diff / 2**20:+.2f} MiB {stat.count_diff:+d} blocks")
        for line in stat.traceback.format()[-16:]:
            print("    " + line)


if __name__ == "__main__":
    compare(sys.argv[1], sys.argv[2])
