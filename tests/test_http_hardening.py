"""Bad input at the HTTP edge, in-process (issue 12 §6 and §7): lone surrogates, chunked bodies,
CSV cells a spreadsheet would run, and /metrics labels a client could invent. The real server's
own refusals (414, 431, 400) are in tests/test_http_server.py."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import falcon
import falcon.testing
import pytest

from api.body import MAX_BODY_BYTES
from api.front import BrokenBody
from api.resources.base import write_csv
from api.routes import OPERATIONS
from audit.csv_cells import csv_cell
from ledger.uscc import make_uscc
from tests.api_support import ADMIN_TOKEN, Api, auth, open_worked_example
from tests.conftest import PROVIDER

AUDITOR_BODY = b'{"name":"%s","role":"auditor"}'
TWIN_A = make_uscc("91371500MA3C00011")
TWIN_B = make_uscc("91371500MA3C00012")
LONE = "%ED%A0%80"  # the UTF-8 encoding of U+D800: never valid UTF-8


def post_raw(api: Api, path: str, body: bytes, **extras: Any) -> falcon.testing.Result:
    headers = {**auth(ADMIN_TOKEN), "Content-Type": "application/json"}
    headers.update(extras.pop("headers", {}))
    return api.client.simulate_post(path, body=body, headers=headers, extras=extras)


def assert_problem(result: falcon.testing.Result, status: int, slug: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"] == "application/problem+json"
    assert result.json["type"].endswith(f"/problems/{slug}")
    assert result.json["status"] == status


# --- lone surrogates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        AUDITOR_BODY % b"\\ud800",
        AUDITOR_BODY % b"\\uDFFF",  # a low surrogate, upper-case hex
        AUDITOR_BODY % b"x\\ud800\\ud800",  # two highs are not a pair
        AUDITOR_BODY % b"\\ude00\\ud83d",  # a pair in the wrong order is two lone ones
        AUDITOR_BODY % b"\\\\\\ud800",  # an escaped backslash, then a lone surrogate
        AUDITOR_BODY % b"\xed\xa0\x80",  # U+D800 as (invalid) UTF-8 bytes, not an escape
        b'{"name":"x","role":"auditor","\\ud800":1}',  # in a key
    ],
    ids=["high", "low-upper-case", "two-highs", "reversed-pair", "after-backslash", "raw", "key"],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_validation_error_that_stores_nothing(
    memory_api: Api, body: bytes
) -> None:
    before = memory_api.log_length()

    result = post_raw(memory_api, "/v1/principals", body)

    assert_problem(result, 422, "validation-error")
    assert memory_api.log_length() == before


def test_the_refusal_of_a_lone_surrogate_names_the_field(memory_api: Api) -> None:
    result = post_raw(memory_api, "/v1/principals", AUDITOR_BODY % b"\\ud800")

    assert result.json["detail"].startswith("body.name:")


def test_a_lone_surrogate_nested_in_a_list_is_refused_before_anything_is_stored(
    memory_api: Api,
) -> None:
    api = open_worked_example(memory_api)
    program = {
        "id": "nested-2026",
        "name": "Nested",
        "fiscal_year": 2026,
        "shares": [{"source_id": "province-2026", "share_bp": 6000, "note": "\ud800"}],
        "max_face_value_fen": 5_000_000,
        "provider_bonus_rate_bp": 500,
        "provider_bonus_source_id": "city-2026",
        "provider_annual_cap_fen": 50_000_000,
        "enterprise_annual_cap_fen": 10_000_000,
    }
    body = json.dumps(program).encode()  # ensure_ascii: the surrogate travels as \ud800
    before = api.log_length()

    result = post_raw(api, "/v1/programs", body, headers=auth(api.tokens["program_officer"]))

    assert_problem(result, 422, "validation-error")
    assert result.json["detail"].startswith("body.shares[0].note:")
    assert api.log_length() == before


def test_a_surrogate_pair_is_one_character_and_is_stored_as_sent(memory_api: Api) -> None:
    result = post_raw(memory_api, "/v1/principals", AUDITOR_BODY % b"\\ud83d\\ude00 \\u9c81")

    assert result.status_code == 201, result.text
    assert result.json["name"] == "😀 鲁"


def test_a_lone_surrogate_is_refused_on_the_real_stores_too(api: Api) -> None:
    before = api.log_length()

    result = post_raw(api, "/v1/principals", AUDITOR_BODY % b"\\udbff")

    assert_problem(result, 422, "validation-error")
    assert api.log_length() == before


def _path_with_lone_surrogates(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", LONE, path)


@pytest.mark.parametrize(
    "op", [op for op in OPERATIONS if op.method == "GET"], ids=lambda op: op.operation_id
)
def test_invalid_utf_8_in_the_path_or_a_query_parameter_is_never_a_server_error(
    memory_api: Api, op: Any
) -> None:
    api = open_worked_example(memory_api)
    role = "admin" if op.public else sorted(op.roles)[0]
    token = api.tokens.get(role, ADMIN_TOKEN)
    names = sorted({q.name for q in op.queries} | {"holder_id", "provider_id", "source_id"})
    query = "&".join(f"{name}={LONE}" for name in names)

    for query_string in (None, query, f"{LONE}={LONE}"):
        result = api.client.simulate_get(
            _path_with_lone_surrogates(op.path), query_string=query_string, headers=auth(token)
        )

        assert result.status_code < 500, (query_string, result.text)


# --- chunked bodies ----------------------------------------------------------------------------
#
# In-process there is no HTTP framing: the WSGI server hands the application the body with the
# chunks already taken apart, and no Content-Length. That is what these environments are.


def chunked(api: Api, body: bytes, stream: Any = None) -> falcon.testing.Result:
    extras: dict[str, Any] = {"CONTENT_LENGTH": ""}
    if stream is not None:
        extras["wsgi.input"] = stream
    return post_raw(api, "/v1/principals", body, headers={"Transfer-Encoding": "chunked"}, **extras)


def padded(size_bytes: int) -> bytes:
    """A valid auditor principal, padded with JSON white space to exactly ``size_bytes``."""
    body = AUDITOR_BODY % b"chunked"
    return body + b" " * (size_bytes - len(body))


def test_a_chunked_body_is_read(memory_api: Api) -> None:
    result = chunked(memory_api, AUDITOR_BODY % b"chunked")

    assert result.status_code == 201, result.text
    assert result.json["name"] == "chunked"


def test_a_chunked_body_of_exactly_the_limit_is_read(memory_api: Api) -> None:
    result = chunked(memory_api, padded(MAX_BODY_BYTES))

    assert result.status_code == 201, result.text


@pytest.mark.parametrize("size_bytes", [MAX_BODY_BYTES + 1, 20_000, 10 * MAX_BODY_BYTES])
def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(
    memory_api: Api, size_bytes: int
) -> None:
    before = memory_api.log_length()

    result = chunked(memory_api, padded(size_bytes))

    assert_problem(result, 413, "payload-too-large")
    assert memory_api.log_length() == before


class BrokenChunks(io.RawIOBase):
    """A body stream that fails as the server's (api.front.Body) does on bad framing."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [BrokenBody("bad chunk size"), BrokenBody("ended early"), OSError("connection reset")],
    ids=["bad-framing", "truncated", "reset"],
)
def test_a_chunked_body_whose_framing_is_broken_is_400_not_500(
    memory_api: Api, error: Exception
) -> None:
    result = chunked(memory_api, b"", stream=BrokenChunks(error))

    assert_problem(result, 400, "bad-request")


class NeverEnds(io.RawIOBase):
    """A body stream with no end, as a server's may be for a request with neither
    Content-Length nor chunks (reading until the client closes the connection)."""

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:
            return b""
        raise AssertionError("a body without a length must not be read: it would never end")


def test_a_body_with_neither_length_nor_chunks_is_empty_and_its_stream_is_not_read(
    memory_api: Api,
) -> None:
    result = post_raw(
        memory_api, "/v1/principals", b"", CONTENT_LENGTH="", **{"wsgi.input": NeverEnds()}
    )

    assert_problem(result, 422, "validation-error")
    assert result.json["detail"] == "body is not valid JSON"


# --- CSV cells ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ('=HYPERLINK("http://evil.invalid","x")', '\'=HYPERLINK("http://evil.invalid","x")'),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        (" =1", " =1"),
        ("", ""),
        (-1, -1),
        (-100_000, -100_000),
        (0, 0),
        (True, True),
        (None, None),
    ],
)
def test_a_cell_a_spreadsheet_would_run_is_text_and_a_number_stays_a_number(
    value: object, cell: object
) -> None:
    assert csv_cell(value) == cell
    assert type(csv_cell(value)) is type(cell)


def csv_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_the_api_csv_writer_escapes_text_and_writes_numbers_as_numbers() -> None:
    resp = falcon.Response()
    items = [{"name": "-1", "amount_fen": -1, "note": "@SUM(A1:A9)", "extra": "=ignored"}]

    write_csv(resp, items, ["name", "amount_fen", "note", "missing"], None)

    assert csv_of(str(resp.text)) == [
        ["name", "amount_fen", "note", "missing"],
        ["'-1", "-1", "'@SUM(A1:A9)", ""],
    ]


def open_twins(api: Api, contact: str, names: tuple[str, str]) -> None:
    """Two enterprises sharing ``contact`` (the shared-contacts inspection finds them)."""
    for uscc, name in zip((TWIN_A, TWIN_B), names, strict=True):
        body = {"id": uscc, "name": name, "kind": "enterprise", "contact": contact}
        assert api.post("/v1/institutions", body).status_code == 201


def every_cell(text: str) -> list[str]:
    return [cell for row in csv_of(text) for cell in row]


def test_the_shared_contacts_csv_runs_no_formula_in_a_spreadsheet(memory_api: Api) -> None:
    api = open_worked_example(memory_api)
    open_twins(api, '=HYPERLINK("http://evil.invalid","x")', ("@SUM(1+1)", "+1"))

    result = api.get("/v1/audit/inspections/shared-contacts", api.tokens["auditor"], format="csv")

    assert result.status_code == 200, result.text
    cells = every_cell(result.text)
    assert '\'=HYPERLINK("http://evil.invalid","x")' in cells
    assert "'@SUM(1+1) / '+1" not in cells  # the names cell is one text: only its start counts
    assert "'@SUM(1+1) / +1" in cells
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]


def test_the_actions_csv_escapes_the_reason_and_keeps_the_position_a_number(
    memory_api: Api,
) -> None:
    api = open_worked_example(memory_api)
    frozen = api.post(
        f"/v1/institutions/{PROVIDER}/freeze",
        {"reason": "=1+2"},
        api.tokens["inspector"],
    )
    assert frozen.status_code == 200, frozen.text

    result = api.get("/v1/audit/inspections/actions", api.tokens["auditor"], format="csv")

    assert result.status_code == 200, result.text
    header, row = csv_of(result.text)
    action = dict(zip(header, row, strict=True))
    assert action["reason"] == "'=1+2"
    assert action["position"].isdigit()


# --- /metrics ----------------------------------------------------------------------------------


def series(metrics: str) -> set[str]:
    return {line.split(" ")[0] for line in metrics.splitlines() if line.startswith("ledger_http")}


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")  # wsgiref's validator, in the client
def test_invented_methods_and_paths_add_no_series_to_the_metrics(memory_api: Api) -> None:
    client = memory_api.client
    client.simulate_request("M00000X", "/v1/health")
    client.simulate_get("/no/such/path/0")
    client.simulate_get("/metrics")  # so that the scrape's own series is there before
    before = series(client.simulate_get("/metrics").text)

    for n in range(1, 30):
        client.simulate_request(f"M{n:05d}X", "/v1/health")
        client.simulate_get(f"/no/such/path/{n}")
    after = series(client.simulate_get("/metrics").text)

    assert after == before
    assert not [s for s in after if "M000" in s or "/no/such" in s]
    assert any('method="other"' in s and 'route="/v1/health"' in s for s in after)
    assert any('route="unmatched"' in s for s in after)
