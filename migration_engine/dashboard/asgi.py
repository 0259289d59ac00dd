"""An ASGI app built on its first request, so that importing the plugin module stays cheap.

Why: Airflow imports every plugin module in every process that loads plugins, including each task's
process (the task runner integrates macro plugins) and the scheduler. Building the FastAPI app at
import time pulls in Airflow's api_fastapi security module and the dashboard (~3.5 s measured);
only the api-server ever serves the app, and there those modules are already loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class LazyASGIApp:
    """Wraps ``"package.module:factory"``; the factory runs once, on the first request."""

    def __init__(self, factory: str, **kwargs: Any):
        module, sep, attr = factory.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"factory must look like 'package.module:function', got {factory!r}")
        self.factory = factory
        self._kwargs = kwargs
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        if self._app is None:  # no await in between: safe within one event loop
            module, _, attr = self.factory.partition(":")
            self._app = getattr(importlib.import_module(module), attr)(**self._kwargs)
        return self._app

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyASGIApp({self.factory!r})"
