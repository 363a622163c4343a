"""The baseline: a bare Starlette route answering with JSON of the same size as the real one."""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with open(os.environ["BENCH_BARE_BODY"]) as body_file:
    BODY = json.load(body_file)


async def offers(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/accounts/{account_id}/upgrade-offers", offers),
        Route("/healthz", healthz),
    ]
)
