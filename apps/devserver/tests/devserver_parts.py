"""Small real FastAPI sub-apps that stand in for the packages in the composition tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from workbench_devserver import Component


class Part:
    """A sub-app with a real lifespan and a readiness switch, recording what happened to it."""

    def __init__(self, name: str, *, fail_startup: bool = False, ready: bool = True) -> None:
        self.events: list[str] = []
        self.ready = ready
        part = self

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
            part.events.append("startup")
            if fail_startup:
                raise RuntimeError(f"{name} cannot open its store")
            yield {f"{name}_state": "from-lifespan"}
            part.events.append("shutdown")

        self.app = FastAPI(title=name, lifespan=lifespan)

        @self.app.get("/readyz")
        async def readyz() -> JSONResponse:
            return JSONResponse(
                {"status": "ready" if part.ready else "loading"},
                status_code=200 if part.ready else 503,
            )

        @self.app.get("/api/v1/readyz")
        async def api_readyz() -> JSONResponse:
            return await readyz()

        @self.app.get("/hello")
        async def hello() -> dict[str, str]:
            return {"part": name}

        @self.app.get("/api/v1/capabilities")
        async def caps() -> dict[str, Any]:
            return {"models": [{"name": "tiny-llama"}]}

        @self.app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "tiny-llama"}]}


def component(part: Part, name: str, mount: str) -> Component:
    return Component(
        name=name,
        title=name.title(),
        mount=mount,
        links=[("hello", f"{mount}/hello")],
        ready_paths=("/api/v1/readyz", "/readyz"),
        app=part.app,
    )
