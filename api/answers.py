"""Answers of the views kept at the log position they were read at.

A read of the views (``Resource.consistent``) first learns the position the views include; the
same request by the same principal on the same day, at that same position, reads the same
rows and renders the same bytes. So the answer is kept under that position and given again
without a query, until the views move on: then the key no longer matches, and the next read
renders afresh. A stale answer is never served, since the position is asked of the store on
every read (read-your-writes holds as before); what is saved is the rows and their rendering.

Only JSON answers with status 200 are kept, at most ``MAX_BODY_CHARS`` each, ``MAX_ANSWERS`` and
``MAX_TOTAL_CHARS`` in all (least recently used first out). Errors are never kept: they are
cheap, and some depend on more than the views (the log decides whether an institution exists).

A voucher (``GET /v1/vouchers/{id}``, not ``as_of``) is read from the log, not the views: its
answer is kept under the voucher's version, which the read repository learns with the one query
that brings its kept voucher up to date; writes to other aggregates leave it valid."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import falcon

MAX_ANSWERS = 4096
MAX_BODY_CHARS = 128 * 1024
# About 8 MiB of answers per worker, at most. At 32 MiB the kept pages of payables (up to
# 128 KiB each) went on filling it for the whole of a 10-minute soak (7 MB in 2.3 minutes,
# tracemalloc); the answers read again and again (a voucher, a provider's balances and first
# page of payables) are a few KiB each.
MAX_TOTAL_CHARS = 8 * 1024 * 1024
KEPT_HEADERS = ("X-Next-After",)
IGNORED_PARAMS = frozenset({"min_position"})  # the position itself is in the key


@dataclass(frozen=True)
class Answer:
    content_type: str
    text: str
    headers: tuple[tuple[str, str], ...]

    def write(self, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_200
        resp.content_type = self.content_type
        resp.text = self.text
        for name, value in self.headers:
            resp.set_header(name, value)


class AnsweredFromCache(Exception):
    """Raised by ``Resource.consistent`` with the kept answer: falcon empties the response
    before its handler (``answered``) runs, so the handler writes it."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer


def answer_key(req: falcon.Request, principal: Hashable, version: Hashable, today: str) -> Any:
    """What the answer depends on: the principal, the route and its query parameters (as
    falcon parsed them, so two spellings of one query share an answer), the day and the
    version of what it reads (the position of the views, or an aggregate's version)."""
    params = tuple(
        sorted(
            (name, value if isinstance(value, str) else tuple(value))
            for name, value in req.params.items()
            if name not in IGNORED_PARAMS
        )
    )
    return (principal, req.method, req.path, params, today, version)


class AnswerCache:
    def __init__(
        self, max_answers: int = MAX_ANSWERS, max_total_chars: int = MAX_TOTAL_CHARS
    ) -> None:
        self.max_answers = max_answers
        self.max_total_chars = max_total_chars
        self.total_chars = 0
        self._answers: OrderedDict[Any, Answer] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Answer | None:
        """The answer kept under ``key``, if any."""
        with self._lock:
            answer = self._answers.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._answers.move_to_end(key)
            self.hits += 1
        return answer

    def keep(self, key: Any, resp: falcon.Response) -> None:
        """Keep ``resp`` under ``key`` if it is a JSON answer with status 200, not too large."""
        text = resp.text
        if (
            resp.status not in (falcon.HTTP_200, 200)
            or resp.content_type != falcon.MEDIA_JSON
            or not isinstance(text, str)
            or len(text) > MAX_BODY_CHARS
        ):
            return
        headers = tuple(
            (name, value) for name in KEPT_HEADERS if (value := resp.get_header(name)) is not None
        )
        answer = Answer(resp.content_type, text, headers)
        with self._lock:
            old = self._answers.pop(key, None)
            if old is not None:
                self.total_chars -= len(old.text)
            self._answers[key] = answer
            self.total_chars += len(text)
            while len(self._answers) > self.max_answers or self.total_chars > self.max_total_chars:
                _, out = self._answers.popitem(last=False)
                self.total_chars -= len(out.text)

    def __len__(self) -> int:
        return len(self._answers)


class AnswerCacheMiddleware:
    """Keeps the answers of the reads that ``Resource.consistent`` marked with a key."""

    def __init__(self, cache: AnswerCache) -> None:
        self.cache = cache

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.answers = self.cache

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        key = req.context.get("answer_key")
        if key is not None and req_succeeded:
            self.cache.keep(key, resp)


def answered(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    """falcon's handler of ``AnsweredFromCache``."""
    assert isinstance(ex, AnsweredFromCache)
    ex.answer.write(resp)
