"""Optional token protection for shared nodes: ``?token=...`` once, then a cookie."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import PlainTextResponse
from nicegui import app

COOKIE = "mcp_token"


def install_token(token: str) -> None:
    """Refuse every request without the token (in the query once, then in a cookie)."""

    @app.middleware("http")
    async def check(request: Request, call_next):
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return PlainTextResponse("MultiCellPose: open the link with ?token=<your token>.", status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response
