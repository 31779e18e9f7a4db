"""A stand-in payment API on loopback, for the demo: what the globex tenant really calls.

    PAYMENTS_API_KEY=... python scripts/payment_api.py [--port 0]

`POST /v1/charges` with `Authorization: Bearer <PAYMENTS_API_KEY>` and a JSON body
`{amount_cents, simulate_failures, simulate_decline}` creates a charge (201). Charges are
de-duplicated by `Idempotency-Key`: a repeated key gets the same charge back (200). To
show retries, a key's first `simulate_failures` requests answer 503, and
`simulate_decline` answers 402. Every request is printed, so the demo shows the calls.
Its first line on stdout is `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hmac
import itertools
import os
import sys

from aiohttp import web


def make_app(api_key: str) -> web.Application:
    charges: dict[str, dict[str, object]] = {}
    seen: collections.Counter[str] = collections.Counter()
    numbers = itertools.count(1)

    async def create_charge(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        seen[key] += 1
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return _answer(request, key, web.json_response(
                {"error": "invalid_api_key"}, status=401))
        body = await request.json()
        if key in charges:
            return _answer(request, key, web.json_response(
                {**charges[key], "idempotent_replay": True}, status=200))
        if seen[key] <= int(body.get("simulate_failures", 0)):
            return _answer(request, key, web.json_response(
                {"error": "gateway_unavailable"}, status=503))
        if body.get("simulate_decline"):
            return _answer(request, key, web.json_response(
                {"error": "card_declined"}, status=402))
        charges[key] = {"id": f"ch_{next(numbers):06d}", "amount_cents": body["amount_cents"],
                        "status": "succeeded"}
        return _answer(request, key, web.json_response(charges[key], status=201))

    app = web.Application()
    app.router.add_post("/v1/charges", create_charge)
    return app


def _answer(request: web.Request, key: str, response: web.Response) -> web.Response:
    print(f"payment API: {request.method} {request.path} (idempotency key {key[:16]}...) "
          f"-> {response.status}", flush=True)
    return response


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    api_key = os.environ.get("PAYMENTS_API_KEY")
    if not api_key:
        sys.exit("error: set PAYMENTS_API_KEY to the key callers must send")
    runner = web.AppRunner(make_app(api_key), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", arguments.port).start()
    print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
