"""The browser pages: ``/`` (what this is, and in development a sign-in), ``/tutor``,
``/student`` and ``/replay`` (one student's session played back), with their
scripts and styles under ``/static/``.

The files are the ``web`` package's data, found where the hub is installed (no
checkout and no Node at run time). Every answer here carries a strict
Content-Security-Policy: scripts and styles only from this origin, no inline code,
connections only back to this origin (REST and Socket.IO).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from aiohttp import web

routes = web.RouteTableDef()

PAGES = {
    "/": "index.html",
    "/tutor": "tutor.html",
    "/student": "student.html",
    "/replay": "replay.html",
}
STATIC = "/static"
# What the pages may load: the folders and kinds of file under /static/.
STATIC_FOLDERS = ("js", "css", "vendor")
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The paths this module serves (rest/docs.py leaves them out of the REST document).
PATHS = (*PAGES, STATIC)
# Not fingerprinted, so revalidated on every use (a 304 when unchanged).
CACHE = "no-cache"
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def web_folder() -> Path:
    """The installed ``web`` package's folder."""
    return Path(str(files("web")))


def content_security_policy(host: str) -> str:
    # 'self' covers ws(s):// to this origin in CSP 3; named too for older browsers.
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The session id is in the pages' query; the token in the fragment is never sent.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = CACHE


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(
            web_folder() / name, headers={"Content-Type": "text/html; charset=utf-8"}
        )
        _headers(request, response)
        return response

    return page


for _path, _name in PAGES.items():
    routes.get(_path)(_page(_name))


@routes.get(STATIC + "/{folder}/{name}")
async def static_file(request: web.Request) -> web.StreamResponse:
    folder, name = request.match_info["folder"], request.match_info["name"]
    suffix = Path(name).suffix
    if folder not in STATIC_FOLDERS or suffix not in CONTENT_TYPES or name.startswith("."):
        raise web.HTTPNotFound()
    path = web_folder() / folder / name
    if not path.is_file():
        raise web.HTTPNotFound()
    response = web.FileResponse(path, headers={"Content-Type": CONTENT_TYPES[suffix]})
    _headers(request, response)
    return response
