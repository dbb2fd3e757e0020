"""The labelling web app: a JSON API over a :class:`LabelStore` and the static page that uses it.

Routes: ``GET /`` (the page), ``GET /api/next?labeler=NAME``, ``POST /api/judge``, ``POST /api/undo`` and
``GET /stats``. With a token, every API route wants it as ``Authorization: Bearer T`` or ``?token=T``;
without one the app answers only requests addressed to the loopback host (no DNS rebinding).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import ConfigError
from .store import Choice, Conflict, LabelStore, UnknownPair

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

LabelerName = Annotated[str, StringConstraints(pattern=LABELER_PATTERN)]


class JudgeRequest(BaseModel):
    """A judgement of the pair shown to ``labeler``: the left or right response is better, a tie, or a skip."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labeler: LabelerName
    pair_id: int
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


def create_app(store: LabelStore, token: str | None = None) -> FastAPI:
    """The app serving ``store``; it closes the store when it shuts down. An empty token counts as none."""
    token = token or None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    def require_token(request: Request) -> None:
        if token is None:
            return
        given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="rlhf-gym labelling", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOCAL_HOSTS))

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

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    api = APIRouter(dependencies=[Depends(require_token)])

    @api.get("/api/next")
    def next_pair(labeler: Annotated[str, Query(pattern=LABELER_PATTERN)]) -> dict:
        shown = store.next_pair(labeler)
        pair = None if shown is None else {"pair_id": shown.pair_id, "prompt": shown.prompt,
                                           "left": shown.left, "right": shown.right}
        return {"labeler": labeler, "pair": pair, "progress": store.progress(labeler)}

    @api.post("/api/judge")
    def judge(request: JudgeRequest) -> dict:
        store.judge(request.labeler, request.pair_id, request.choice)
        return {"saved": {"pair_id": request.pair_id, "choice": request.choice},
                "progress": store.progress(request.labeler)}

    @api.post("/api/undo")
    def undo(request: UndoRequest) -> dict:
        pair_id = store.undo(request.labeler)
        if pair_id is None:
            raise HTTPException(409, f"{request.labeler} has no judgement to undo")
        return {"undone": pair_id, "progress": store.progress(request.labeler)}

    @api.get("/stats")
    def stats() -> dict:
        return store.stats()

    app.include_router(api)
    return app
