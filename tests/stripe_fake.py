"""A small stand-in for the few Stripe API endpoints Livecast calls, served on a local port.

Stripe's real API is not reachable from CI, and no maintained Stripe-compatible mock is
installable from PyPI or npm (Stripe's own ``stripe-mock`` is a Go binary, and it is stateless:
it neither keeps idempotency keys nor declines cards). This fake keeps just enough state to
test what matters here: idempotency keys replay the first answer (a different request under a
used key is refused, as Stripe does), the test cards below succeed, decline with a 402 or stay
``processing``, and every request is recorded so tests can count what reached "Stripe".

Cards (``payment_method``): ``pm_card_visa`` succeeds, ``pm_card_chargeDeclined`` is declined
(402 ``card_declined``), ``pm_processing`` is accepted but stays ``processing``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeStripe:
    secret_key: str = "sk_test_fake"
    requests: list[Recorded] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotent: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = field(default_factory=dict)
    url: str = ""
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def posts(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/checkout/sessions", self._checkout, methods=["POST"]),
            Route("/v1/payment_intents", self._create_intent, methods=["POST"]),
            Route("/v1/payment_intents/{id}", self._get_intent, methods=["GET"]),
        ])

    async def _record(self, request: Request) -> Recorded | Response:
        body = (await request.body()).decode()
        rec = Recorded(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()},
                       dict(parse_qsl(body, keep_blank_values=True)))
        self.requests.append(rec)
        if rec.headers.get("authorization") != f"Bearer {self.secret_key}":
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}, 401)
        return rec

    def _replay(self, rec: Recorded) -> Response | None:
        key = rec.headers.get("idempotency-key", "")
        if not key or key not in self.idempotent:
            return None
        form, status, doc = self.idempotent[key]
        if form != rec.form:
            return JSONResponse({"error": {"type": "idempotency_error", "message": "Keys for idempotent requests "
                                           "can only be used with the same parameters they were first used with."}},
                                400)
        return JSONResponse(doc, status, headers={"Idempotent-Replayed": "true"})

    def _remember(self, rec: Recorded, status: int, doc: dict[str, Any]) -> Response:
        key = rec.headers.get("idempotency-key", "")
        if key:
            self.idempotent[key] = (rec.form, status, doc)
        return JSONResponse(doc, status)

    async def _checkout(self, request: Request) -> Response:
        rec = await self._record(request)
        if isinstance(rec, Response):
            return rec
        replay = self._replay(rec)
        if replay is not None:
            return replay
        sid = f"cs_test_{next(self._ids)}"
        return self._remember(rec, 200, {"id": sid, "object": "checkout.session",
                                         "url": f"https://checkout.stripe.com/c/pay/{sid}"})

    async def _create_intent(self, request: Request) -> Response:
        rec = await self._record(request)
        if isinstance(rec, Response):
            return rec
        replay = self._replay(rec)
        if replay is not None:
            return replay
        form = rec.form
        if not form.get("customer") or not form.get("payment_method") or not form.get("amount", "").isdigit():
            return self._remember(rec, 400, {"error": {"type": "invalid_request_error",
                                                       "message": "customer, payment_method and amount are required"}})
        pi = f"pi_fake_{next(self._ids)}"
        method = form["payment_method"]
        status = {"pm_card_visa": "succeeded", "pm_processing": "processing"}.get(method, "requires_payment_method")
        intent = {"id": pi, "object": "payment_intent", "amount": int(form["amount"]),
                  "amount_received": int(form["amount"]) if status == "succeeded" else 0,
                  "currency": form.get("currency", ""), "customer": form["customer"], "payment_method": method,
                  "status": status, "confirm": form.get("confirm"), "off_session": form.get("off_session"),
                  "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}}
        self.intents[pi] = intent
        if status == "requires_payment_method":
            return self._remember(rec, 402, {"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined.", "payment_intent": intent}})
        return self._remember(rec, 200, intent)

    async def _get_intent(self, request: Request) -> Response:
        rec = await self._record(request)
        if isinstance(rec, Response):
            return rec
        intent = self.intents.get(request.path_params["id"])
        if intent is None:
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "No such payment_intent"}},
                                404)
        return JSONResponse(intent)


class FakeStripeServer:
    """Serves a :class:`FakeStripe` with uvicorn on 127.0.0.1 and a free port, in this loop."""

    def __init__(self, fake: FakeStripe) -> None:
        self.fake = fake
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeStripe:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self.fake.app(), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():  # failed to start: raise its error
                await self._task
            await asyncio.sleep(0.01)
        self.fake.url = f"http://127.0.0.1:{port}"
        return self.fake

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task
