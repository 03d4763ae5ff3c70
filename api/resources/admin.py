"""Health and principals."""

from __future__ import annotations

import falcon

from api import render
from api.auth import actor_of
from api.body import parse_body
from api.resources.base import Resource, run_command, write_json
from ledger.idempotency import Idempotency
from projections.reader import ViewReader


class Health:
    def __init__(self, reader: ViewReader) -> None:
        self.reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Alive, and how far the read models are behind the log."""
        lag = self.reader.lag()
        projections = {
            "position": lag.position,
            "head": lag.head,
            "behind_events": lag.behind_events,
            "behind_ms": int(lag.behind_s * 1000),
        }
        write_json(resp, {"status": "ok", "projections": projections})


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

        # The token is never stored, not even in the idempotency record: a replay carries null.
        view = run_command(req, resp, call, lambda v: render.principal(v, None), 201)
        if not resp.get_header("Idempotent-Replayed"):
            write_json(resp, render.principal(view, tokens[0]), 201)
