"""A large camt.053 read in shares by two processes gives exactly what one reader gives: every
line, number and key, every statement, and the same refusal at the same fault."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from benchmarks.parse_statements import synthetic_camt053
from treasury import camt053, parallel_parse
from treasury.statements import StatementInvalid, parse_statement

CAMT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "camt053"


def with_copies(data: bytes) -> bytes:
    """Two statements of one account with the same entries, and the first entry eight times
    more: identical lines, whose keys count the ones before them across the shares."""
    text = data.decode()
    start, end = text.index("<Ntry>"), text.index("</Ntry>") + len("</Ntry>")
    entry = text[start:end]
    text = text[:end] + entry * 7 + text[end:]
    text = text.replace("</Stmt>", entry + "</Stmt>")
    stmt = text[text.index("<Stmt>") : text.index("</Stmt>") + len("</Stmt>")]
    second = stmt.replace("<Id>STMT-", "<Id>SECOND-", 1)
    return text.replace(stmt, stmt + second).encode()


@pytest.fixture(scope="module")
def large() -> bytes:
    data = with_copies(synthetic_camt053(3_000, batch_every=7))
    assert len(data) > parallel_parse.MIN_BYTES  # read in two processes
    return data


@pytest.mark.parametrize("path", sorted(CAMT.glob("*.xml")), ids=lambda p: p.name[:40])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_fixture_read_in_shares_merges_into_what_one_reader_reads(path: Path, n: int) -> None:
    data = path.read_bytes()
    shares = [camt053.parse_camt053_share(data, (k, k + 1, n)) for k in range(n)]

    assert camt053.merge_shares(data, shares) == camt053.parse_camt053(data)


def test_a_large_file_read_by_two_processes_is_what_one_process_reads(large: bytes) -> None:
    alone = camt053.parse_camt053(large)
    together = parse_statement(large, "application/xml")

    assert together == alone
    assert [len(s.lines) for s in together.statements] == [3_008, 3_008]
    keys = [line.key for s in together.statements for line in s.lines]
    assert len(set(keys)) == len(keys)
    assert sum("#" in key for key in keys) == 2_999 + 17  # the second statement, the copies
    assert parallel_parse._WORKER.process is not None  # it did go to the worker


def test_a_worker_that_died_is_started_again_and_the_answer_is_the_same(large: bytes) -> None:
    parse_statement(large, "application/xml")
    worker = parallel_parse._WORKER.process
    assert worker is not None
    worker.kill()
    worker.wait()

    assert parse_statement(large, "application/xml") == camt053.parse_camt053(large)
    assert parallel_parse._WORKER.process is not worker


def refusal(data: bytes, parse: object) -> str:
    with pytest.raises(StatementInvalid) as caught:
        parse(data)  # type: ignore[operator]
    return str(caught.value)


@pytest.mark.parametrize("entry", [2, 3, 2_000])  # this process's share, the worker's, later
def test_a_fault_in_any_share_is_refused_as_one_reader_refuses_it(large: bytes, entry: int) -> None:
    text = large.decode()
    at = -1
    for _ in range(entry + 1):
        at = text.index("<Ntry>", at + 1)
    amount = text.index('<Amt Ccy="CNY">', at) + len('<Amt Ccy="CNY">')
    broken = (text[:amount] + "1.234" + text[text.index("<", amount) :]).encode()

    message = refusal(broken, camt053.parse_camt053)
    assert f"line {entry + 1}" in message
    assert refusal(broken, parallel_parse.parse_camt053) == message


def test_a_file_cut_short_is_refused_as_one_reader_refuses_it(large: bytes) -> None:
    cut = large[: len(large) * 2 // 3]

    assert refusal(cut, parallel_parse.parse_camt053) == refusal(cut, camt053.parse_camt053)


def test_the_limit_on_txdtls_holds_over_the_shares_together(
    large: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = sum(
        len(line.transactions) for s in camt053.parse_camt053(large).statements for line in s.lines
    )
    monkeypatch.setattr(camt053, "MAX_TRANSACTIONS", count - 1)  # this process only

    message = refusal(large, parallel_parse.parse_camt053)
    assert message == refusal(large, camt053.parse_camt053)
    assert "TxDtls" in message


def test_an_error_here_leaves_no_answer_of_the_worker_for_the_next_file(
    large: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> camt053.Share:
        raise MemoryError("this process ran out while the worker read its share")

    with monkeypatch.context() as patched:
        patched.setattr(camt053, "parse_camt053_share", broken)  # this process only
        with pytest.raises(MemoryError):
            parallel_parse.parse_camt053(large)

    other = synthetic_camt053(3_000, batch_every=5, seed=7)
    got: list[object] = []  # a stale answer in the pipe would deadlock this: fail, not hang
    reader = threading.Thread(target=lambda: got.append(parallel_parse.parse_camt053(other)))
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the worker's answer to the failed read was left in the pipe"
    assert got == [camt053.parse_camt053(other)]
