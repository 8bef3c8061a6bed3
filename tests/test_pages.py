"""The browser pages the hub serves (rest/pages.py) and the development sign-in
(rest/dev.py): headers, what is and is not served, where the files come from."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from realtime.base.config import DEV_JWT_SECRET, Settings
from rest.pages import PAGES, web_folder
from tests.conftest import Hub, HubFactory

ROOT = Path(__file__).resolve().parent.parent
DEV_TOKEN = "/api/v1/dev/token"


def check_headers(headers: object) -> None:
    csp = headers["Content-Security-Policy"]  # type: ignore[index]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"].startswith("'self'")
    assert "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"  # type: ignore[index]
    assert headers["Cache-Control"] == "no-cache"  # type: ignore[index]
    assert headers["Referrer-Policy"] == "no-referrer"  # type: ignore[index]


@pytest.mark.parametrize("path", ["/", "/tutor", "/student", "/replay"])
async def test_each_page_is_html_under_a_strict_policy(hub: Hub, path: str) -> None:
    async with hub.http.get(hub.url + path + "?session=x") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        check_headers(resp.headers)
        html = await resp.text()
    # Scripts only as files of this origin; no inline script or style anywhere.
    assert re.findall(r"<script[^>]*>", html) and all(
        re.fullmatch(r'<script type="module" src="/static/js/\w+\.js">', tag)
        for tag in re.findall(r"<script[^>]*>", html)
    )
    assert "<style" not in html and " style=" not in html and "onclick" not in html


async def test_every_script_a_page_imports_is_served_as_javascript(hub: Hub) -> None:
    folder = web_folder()
    scripts = sorted((folder / "js").glob("*.js"))
    assert scripts
    seen = set()
    for script in scripts:
        for imported in re.findall(r'from "(/static/[^"]+)"', script.read_text()):
            seen.add(imported)
        seen.add(f"/static/js/{script.name}")
    for path in sorted(seen):
        async with hub.http.get(hub.url + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8", path
            check_headers(resp.headers)
    for sheet in sorted((folder / "css").glob("*.css")):
        async with hub.http.get(hub.url + f"/static/css/{sheet.name}") as resp:
            assert resp.status == 200, sheet.name
            assert resp.content_type == "text/css"
            check_headers(resp.headers)


async def test_each_page_loads_only_what_is_served(hub: Hub) -> None:
    """Every script and style sheet a page names is a file of the folder (a page that
    names a missing one would break only in the browser)."""
    for path, name in PAGES.items():
        html = (web_folder() / name).read_text()
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
            async with hub.http.get(hub.url + asset) as resp:
                assert resp.status == 200, (path, asset)


async def test_the_replay_page_is_served_with_its_query(hub: Hub) -> None:
    """/replay?session=&student= as a platform or the front page's form opens it; the
    sign-in stays in the fragment, so the page itself needs no token."""
    async with hub.http.get(hub.url + "/replay?session=s-1&student=s1") as resp:
        assert resp.status == 200
        check_headers(resp.headers)
        html = await resp.text()
    assert '<script type="module" src="/static/js/replay.js">' in html
    assert 'href="/static/css/replay.css"' in html
    index = (web_folder() / "index.html").read_text()
    assert 'action="/replay"' in index


@pytest.mark.parametrize(
    "path",
    [
        "/static/__init__.py",
        "/static/js/missing.js",
        "/static/vendor/README.md",
        "/static/js/..%2F__init__.py",
        "/static/../web/__init__.py",
        "/static/student.html",
        "/index.html",
    ],
)
async def test_nothing_else_of_the_folder_is_served(hub: Hub, path: str) -> None:
    async with hub.http.get(hub.url + path) as resp:
        assert resp.status == 404, path


async def test_the_dev_sign_in_does_not_exist_on_a_hub_with_its_own_key(hub: Hub) -> None:
    """It answers exactly as a path that exists nowhere: 401 without a token (as every
    /api/v1 path), 404 with one."""
    body = {"sub": "t1", "role": "TUTOR", "center": "c1"}
    for headers, status in [
        ({}, 401),
        ({"Authorization": f"Bearer {hub.tokens('t1', 'TUTOR')}"}, 404),
    ]:
        for path in (DEV_TOKEN, "/api/v1/no/such/route"):
            async with hub.http.post(hub.url + path, json=body, headers=headers) as resp:
                assert resp.status == status, (path, headers)
    async with hub.http.get(hub.url + "/api/v1/openapi.json") as resp:
        assert DEV_TOKEN not in (await resp.json())["paths"]


def test_production_never_runs_on_the_development_secret() -> None:
    """So the development routes, which need it, never exist in production."""
    assert Settings(jwt_secret=None).development_mode
    assert not Settings(jwt_secret="x" * 40).development_mode
    with pytest.raises(ValidationError):
        Settings(env="production")
    with pytest.raises(ValidationError):
        Settings(env="production", jwt_secret=DEV_JWT_SECRET)


async def test_a_development_hub_mints_tokens_the_hub_accepts(make_hub: HubFactory) -> None:
    hub = await make_hub(jwt_secret=None)
    body = {"sub": "s9", "role": "STUDENT", "center": "c7", "name": "Sam Nine"}
    async with hub.http.post(hub.url + DEV_TOKEN, json=body) as resp:  # no bearer token
        assert resp.status == 200
        data = (await resp.json())["data"]
    claims = jwt.decode(data["token"], DEV_JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["center"], claims["name"]) == (
        "s9",
        "STUDENT",
        "c7",
        "Sam Nine",
    )
    assert claims["exp"] == data["expires_at"]
    status, me = await hub.api(data["token"]).get("/api/v1/sessions")
    assert status == 200, me
    async with hub.http.post(hub.url + DEV_TOKEN, json={**body, "role": "KING"}) as resp:
        assert resp.status == 422
    async with hub.http.get(hub.url + "/api/v1/openapi.json") as resp:
        assert DEV_TOKEN in (await resp.json())["paths"]


def test_the_package_ships_every_file_of_the_pages() -> None:
    """`pip install .` must carry the pages (the Procfile's hub serves them with no
    checkout): every file under web/ matches the package data of pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "web" in config["packages"]
    patterns = config["package-data"]["web"]
    folder = ROOT / "web"
    files = [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py"
    ]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data] web: {missing}"


def test_the_vendored_versions_are_the_locked_ones() -> None:
    readme = (ROOT / "web" / "vendor" / "README.md").read_text()
    lock = json.loads((ROOT / "tests" / "js" / "package-lock.json").read_text())["packages"]
    for name in ("socket.io-client", "perfect-freehand"):
        row = re.search(rf"^\| {re.escape(name)} \| ([^ |]+) \|", readme, re.M)
        assert row, f"web/vendor/README.md names no version of {name}"
        assert row.group(1) == lock[f"node_modules/{name}"]["version"], name
