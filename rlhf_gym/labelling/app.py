"""The labelling web app: a JSON API over a :class:`LabelStore` and the static page that uses it.

Routes: ``GET /`` (the page), ``GET /api/next?labeler=NAME``, ``POST /api/judge``, ``POST /api/undo`` and
``GET /stats``. With a token, every route but the page wants it as ``Authorization: Bearer T`` or ``?token=T``;
without one the app answers only requests addressed to the loopback host (no DNS rebinding). The token is
checked before a byte of the body is read, a body over :data:`MAX_BODY_BYTES` is refused (413), and error
replies never repeat the request back beyond a short prefix.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError
from .pairs import MAX_PAIR_ID
from .store import Choice, Conflict, LabelStore, StoreWriteError, UnknownPair

STATIC_DIR = Path(__file__).parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost")
LABELER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_BODY_BYTES = 16 * 1024
"""The largest request body the app reads (a judgement takes under 200 bytes)."""
ECHO_CHARS = 40
"""Error replies repeat at most this many characters of a name the request gave."""
MAX_ERRORS = 5
"""A 422 reply lists at most this many problems."""
logger = logging.getLogger(__name__)

LabelerName = Annotated[str, StringConstraints(pattern=LABELER_PATTERN)]


class JudgeRequest(BaseModel):
    """A judgement of the pair shown to ``labeler``: the left or right response is better, a tie, or a skip."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labeler: LabelerName
    pair_id: Annotated[int, Field(ge=0, le=MAX_PAIR_ID)]
    choice: Choice


class UndoRequest(BaseModel):
    """Take back ``labeler``'s latest judgement."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labeler: LabelerName


def check_bind(host: str, token: str | None) -> None:
    """Refuse (:class:`~rlhf_gym.errors.ConfigError`) to serve beyond the loopback host without a token."""
    if host not in LOCAL_HOSTS and not token:
        raise ConfigError(f"binding {host} lets other machines reach the page: pass --token T as well "
                         f"(every request must then carry it), or bind 127.0.0.1")


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[:limit] + "..."


def is_public(path: str) -> bool:
    """Whether ``path`` is the page or its static files, which hold no data and need no token."""
    return path == "/" or path.startswith("/static/")


class RequestGuard:
    """ASGI middleware in front of every route: the token, then the body size, before any route reads the body.

    A body longer than ``max_body_bytes`` is refused with 413, from its Content-Length before reading, or (a stream
    without one) at the first chunk that crosses the limit; a body within it is read here and handed on whole.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)
        if self.token is not None and not is_public(request.url.path):
            given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                await JSONResponse({"detail": "missing or wrong token"}, 401,
                                   headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        too_large = JSONResponse({"detail": f"request body over the limit of {self.max_body_bytes} bytes"}, 413)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await too_large(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(store: LabelStore, token: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The app serving ``store``; it closes the store when it shuts down. An empty token counts as none."""
    token = token or None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title="rlhf-gym labelling", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOCAL_HOSTS))
    app.add_middleware(RequestGuard, token=token, max_body_bytes=max_body_bytes)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(UnknownPair)
    async def unknown_pair(_: Request, error: UnknownPair) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(StoreWriteError)
    async def write_failed(_: Request, error: StoreWriteError) -> JSONResponse:
        logger.error("%s", error)
        return JSONResponse({"detail": f"{error}; this request saved nothing, every earlier judgement is kept"},
                            status_code=507 if error.disk_full else 500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own reply repeats the input whole; this one names the field and what is wrong, briefly
        problems = [{"loc": [part if isinstance(part, int) else shorten(str(part)) for part in problem["loc"]],
                     "msg": shorten(problem["msg"], 200),
                     "type": problem["type"]} for problem in error.errors()[:MAX_ERRORS]]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/next")
    def next_pair(labeler: Annotated[str, Query(pattern=LABELER_PATTERN)]) -> dict:
        shown = store.next_pair(labeler)
        pair = None if shown is None else {"pair_id": shown.pair_id, "prompt": shown.prompt,
                                           "left": shown.left, "right": shown.right}
        return {"labeler": labeler, "pair": pair, "progress": store.progress(labeler)}

    @app.post("/api/judge")
    def judge(request: JudgeRequest) -> dict:
        store.judge(request.labeler, request.pair_id, request.choice)
        return {"saved": {"pair_id": request.pair_id, "choice": request.choice},
                "progress": store.progress(request.labeler)}

    @app.post("/api/undo")
    def undo(request: UndoRequest) -> dict:
        pair_id = store.undo(request.labeler)
        if pair_id is None:
            raise HTTPException(409, f"{request.labeler} has no judgement to undo")
        return {"undone": pair_id, "progress": store.progress(request.labeler)}

    @app.get("/stats")
    def stats() -> dict:
        return store.stats()

    return app
