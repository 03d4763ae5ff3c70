"""Health and principals."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from api import render
from api.auth import actor_of
from api.body import parse_body
from api.resources.base import Resource, page_params, paged, run_command, write_json
from ledger.idempotency import Idempotency
from projections.reader import ViewReader
from projections.runner import Lag


class Health:
    def __init__(self, reader: ViewReader, chain: ViewReader | None = None) -> None:
        self.reader = reader
        self.chain = chain

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Alive, and how far the read models and the audit chain are behind the log."""
        body: dict[str, object] = {"status": "ok", "projections": _lag_body(self.reader.lag())}
        if self.chain is not None:
            body["audit_chain"] = _lag_body(self.chain.lag())
        write_json(resp, body)


def _lag_body(lag: Lag) -> dict[str, int]:
    return {
        "position": lag.position,
        "head": lag.head,
        "behind_events": lag.behind_events,
        "behind_ms": int(lag.behind_s * 1000),
    }


class Principals(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = parse_body(req, "NewPrincipal")
        tokens: list[str] = []

        def call(idem: Idempotency | None) -> tuple[object, int | None]:
            view, token, position = self.ledger.create_principal(
                name=body["name"],
                role=body["role"],
                institution_id=body.get("institution_id"),
                actor=actor_of(req),
                idempotency=idem,
            )
            tokens.append(token)
            return view, position

        created_with_token(req, resp, call, 201, tokens)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of principals from the views, oldest first."""
        after, limit = page_params(req)
        self.consistent(req, resp)
        rows = self.reader.store.principals(after, limit)
        write_json(resp, paged([render.principal_row_of(r) for r in rows], limit))


class PrincipalRevoke(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.command(
            req,
            resp,
            "Reason",
            self.ledger.revoke_principal,
            lambda v: render.principal(v, None),
            200,
            id,
        )


class PrincipalRotate(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        parse_body(req, "Empty")
        tokens: list[str] = []

        def call(idem: Idempotency | None) -> tuple[object, int | None]:
            view, token, position = self.ledger.rotate_principal(
                id, actor=actor_of(req), idempotency=idem
            )
            tokens.append(token)
            return view, position

        created_with_token(req, resp, call, 200, tokens)


def created_with_token(
    req: falcon.Request,
    resp: falcon.Response,
    call: Callable[[Idempotency | None], tuple[object, int | None]],
    status: int,
    tokens: list[str],
) -> None:
    """Answer with the new token, shown this once. The token is never stored, not even in the
    idempotency record: a replay carries null (and the token of that call is thrown away)."""
    view = run_command(req, resp, call, lambda v: render.principal(v, None), status)
    if not resp.get_header("Idempotent-Replayed"):
        write_json(resp, render.principal(view, tokens[0]), status)
