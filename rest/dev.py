"""Development sign-in: ``POST /api/v1/dev/token`` mints a token for a chosen role,
center and name, so the pages can be tried without an LMS.

The route exists only when the hub runs on the built-in development secret
(``Settings.development_mode``, which ``HUB_ENV=production`` refuses to start
with): with any configured key it is not registered at all, so it answers 404
like any unknown path.
"""

from __future__ import annotations

from typing import Annotated

import jwt
from aiohttp import web
from pydantic import Field, StringConstraints
from typing_extensions import TypedDict

from realtime.base.identity import Role, mint_token
from rest.http import API_PREFIX, ok, parse_body
from rest.keys import SETTINGS
from rest.openapi import documented
from rest.schemas import Body, Id

routes = web.RouteTableDef()

PATH = API_PREFIX + "/dev/token"
DEFAULT_TTL_S = 8 * 3600


class DevTokenRequest(Body):
    sub: Id
    role: Role
    center: Id
    name: Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)] | None = None
    ttl_s: int = Field(default=DEFAULT_TTL_S, ge=60, le=24 * 3600)


class DevToken(TypedDict):
    """A token signed with the development secret, and when it expires."""

    token: str
    expires_at: int


@routes.post(PATH)
@documented(DevToken, body=DevTokenRequest, public=True)
async def dev_token(request: web.Request) -> web.Response:
    """Development only (the hub on its built-in secret): a token for any role."""
    wanted = await parse_body(request, DevTokenRequest)
    token = mint_token(
        request.app[SETTINGS],
        sub=wanted.sub,
        role=wanted.role,
        center=wanted.center,
        name=wanted.name or None,
        ttl_s=wanted.ttl_s,
    )
    # The token's own exp, as mint_token set it.
    expires_at = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    return ok(DevToken(token=token, expires_at=expires_at))
