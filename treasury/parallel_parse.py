"""A large camt.053 read by two processes at once: this one reads three of every five of its
entries and a worker the rest (``camt053.parse_camt053_share``), and this one merges them
(``merge_shares``) into the ``ParsedStatement`` one process would have made, numbers and keys
included.

Reading an entry into a line is Python work under one interpreter lock, most of a parse's
cost; parsing the XML itself is about a third of it, and each process parses all of it. On
this 2-core machine the 100,000-entry camt.053.001.08 of benchmarks/reconcile.py took a median
8.0 s in one process and 6.8 s in two (six runs each, in fresh processes). Below
``MIN_BYTES``, or with one core, one process reads the file as before.

The worker sends its lines back as plain tuples (``_packed_share``): for 50,000 lines they
unpickle and are made lines again in 0.8 s, where unpickling the dataclasses took 1.1 s.
Anything that goes wrong on either side (a file that turns out unreadable, a worker that died)
makes this process read the whole file again on its own, so a bad file is refused with exactly
the message one reader gives, at the first fault in file order. The worker is a child process
started the first time it is needed (not forked: the server has threads) and then kept for
the life of the process."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import threading
from typing import Any

from treasury import camt053
from treasury.statements import (
    MAX_LINES,
    Batch,
    ParsedStatement,
    StatementInvalid,
    StatementLine,
    TransactionDetail,
)

MIN_BYTES = 2 * 1024 * 1024  # about 4,000 entries: one process reads them in a quarter second
# Of every five entries this process reads three and the worker two: the worker also packs
# and pickles its lines, and this process unpickles and merges them.
OWN_SHARE, WORKER_SHARE = (0, 3, 5), (3, 5, 5)


def parse_camt053(data: bytes, *, max_lines: int = MAX_LINES) -> ParsedStatement:
    """``camt053.parse_camt053(data)``, in two processes when the file is large."""
    if len(data) < MIN_BYTES or (os.cpu_count() or 1) < 2:
        return camt053.parse_camt053(data, max_lines=max_lines)
    with _WORKER.lock:  # one import at a time uses the worker; another waits for it
        sent = _WORKER.send(data, WORKER_SHARE, max_lines)
        own: camt053.Share | None = None
        try:
            own = camt053.parse_camt053_share(data, OWN_SHARE, max_lines=max_lines)
        except StatementInvalid:
            pass
        finally:  # whatever happened here, its answer must not wait in the pipe for the next
            other = _WORKER.receive() if sent else None
    if own is None or other is None:
        # The first fault in file order, in the words one reader uses.
        return camt053.parse_camt053(data, max_lines=max_lines)
    try:
        return camt053.merge_shares(data, [own, _unpacked(other)])
    except StatementInvalid:
        return camt053.parse_camt053(data, max_lines=max_lines)


class _Worker:
    """The other process: ``python -m treasury.parallel_parse``, reading (data, share,
    max_lines) from its stdin and writing its packed share (or None) to its stdout, pickled.
    A plain child process, not multiprocessing: that would start the parent's main module
    again in the child, and a script that imports the ledger need not guard against it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None

    def send(self, data: bytes, share: tuple[int, int, int], max_lines: int) -> bool:
        """Hand the worker a share to read; False if it cannot be started or reached."""
        try:
            process = self._running()
            assert process.stdin is not None
            pickle.dump((data, share, max_lines), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
            return True
        except (OSError, ValueError, pickle.PickleError):
            self._stop()
            return False

    def receive(self) -> Packed | None:
        """The share the worker read, or None (it found a fault, or it died)."""
        try:
            assert self.process is not None and self.process.stdout is not None
            answer: Packed | None = pickle.load(self.process.stdout)
            return answer
        except (OSError, EOFError, ValueError, pickle.PickleError, AttributeError, ImportError):
            self._stop()
            return None

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            root = os.path.dirname(os.path.dirname(os.path.abspath(camt053.__file__)))
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "treasury.parallel_parse"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": path},
                close_fds=True,
            )
        return self.process

    def _stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


_WORKER = _Worker()


def _serve() -> None:
    """The worker's loop: until its parent closes the pipe (or dies), read one share a time.
    The cyclic collector stays off, as it is in the import (api/reconcile.py): a share is a
    million objects that live until they are sent, none of them garbage."""
    gc.disable()
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            data, share, max_lines = pickle.load(requests)
        except EOFError:
            return
        try:
            answer: Packed | None = _packed_share(data, share, max_lines)
        except StatementInvalid:
            answer = None
        del data
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


# ---- the worker's answer: plain tuples ------------------------------------------------------
_LINE_FIELDS = tuple(StatementLine.__dataclass_fields__)
_TX_FIELDS = tuple(TransactionDetail.__dataclass_fields__)
_BATCH_FIELDS = tuple(Batch.__dataclass_fields__)
_BATCHES_AT = _LINE_FIELDS.index("batches")
_TRANSACTIONS_AT = _LINE_FIELDS.index("transactions")
assert _TRANSACTIONS_AT == _BATCHES_AT + 1, "_unpacked puts them back side by side"


# A share as the worker sends it: format, message id, each statement's header with its lines as
# tuples of their fields in order, and the count of TxDtls.
Packed = tuple[str, str | None, list[tuple[Any, list[tuple[Any, ...]]]], int]


def _packed_share(data: bytes, share: tuple[int, int, int], max_lines: int) -> Packed:
    """Runs in the worker: one share, packed."""
    read = camt053.parse_camt053_share(data, share, max_lines=max_lines)
    parts = [(header, [_line_tuple(line) for line in lines]) for header, lines in read.parts]
    return read.format, read.message_id, parts, read.transaction_count


def _line_tuple(line: StatementLine) -> tuple[Any, ...]:
    values = [getattr(line, name) for name in _LINE_FIELDS]
    values[_BATCHES_AT] = tuple([_fields(b, _BATCH_FIELDS) for b in line.batches])
    values[_TRANSACTIONS_AT] = tuple([_fields(t, _TX_FIELDS) for t in line.transactions])
    return tuple(values)


def _fields(obj: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple([getattr(obj, name) for name in names])


def _unpacked(packed: Packed) -> camt053.Share:
    """The worker's share with its tuples made lines again."""
    format_name, message_id, packed_parts, transaction_count = packed
    b, t = _BATCHES_AT, _TRANSACTIONS_AT
    parts = [
        (
            header,
            [
                StatementLine(  # type: ignore[call-arg]  # positional, in field order
                    *v[:b],
                    tuple([Batch(*x) for x in v[b]]),
                    tuple([TransactionDetail(*x) for x in v[t]]),
                    *v[t + 1 :],
                )
                for v in lines
            ],
        )
        for header, lines in packed_parts
    ]
    return camt053.Share(format_name, message_id, parts, transaction_count)


if __name__ == "__main__":
    _serve()
