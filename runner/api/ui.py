"""The web UI's files at `/ui` (runner/ui/static): public, since they hold no data; every datum
comes from `/api/v1` with the viewer's own token.

    GET /ui            -> 307 to /ui/ (so the page's relative links resolve under it)
    GET /ui/           -> index.html, never cached (it names the assets' version)
    GET /ui/{path}     -> a file; cached for a year when asked for with the current `?v=`
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

import runner
from runner.api import problems

STATIC = Path(__file__).resolve().parents[1] / "ui" / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
#: Scripts and styles from this server only; data from its API only; never framed.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'self'; "
    "form-action 'none'; frame-ancestors 'none'"
)
FOREVER = "public, max-age=31536000, immutable"

router = APIRouter(tags=["ui"], include_in_schema=False)


@functools.cache
def version() -> str:
    """The assets' version: the runner's, and a digest of the files (an edit is a new URL)."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return f"{runner.__version__}-{digest.hexdigest()[:12]}"


@router.get("/ui")
async def entry(request: Request) -> Response:
    """Redirect to `/ui/`: the page's relative links resolve under it."""
    return RedirectResponse("ui/", status_code=307, headers={"Cache-Control": "no-store"})


@router.get("/ui/{path:path}")
async def asset(request: Request, path: str) -> Response:
    """`index.html` for the entry, or the file at `path`; 404 for anything else."""
    if path in ("", "index.html"):
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        body = page.replace("__VERSION__", version())
        return _file(body.encode(), ".html", "no-store")
    file = _find(path)
    if file is None:
        return problems.response(request, 404, f"the UI has no file {path!r}", kind="not-found")
    cache = FOREVER if request.query_params.get("v") == version() else "no-cache"
    return _file(file.read_bytes(), file.suffix, cache)


def _find(path: str) -> Path | None:
    """The static file `path` names, or None (unknown type, hidden, or outside the folder)."""
    if any(part.startswith(".") or not part for part in path.split("/")):
        return None
    file = (STATIC / path).resolve()
    if not file.is_relative_to(STATIC) or not file.is_file() or file.suffix not in TYPES:
        return None
    return file


def _file(body: bytes, suffix: str, cache: str) -> Response:
    headers = {
        "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": POLICY,
        "Referrer-Policy": "no-referrer",
        "ETag": '"' + hashlib.sha256(body).hexdigest()[:16] + '"',
    }
    return Response(body, media_type=TYPES[suffix], headers=headers)
