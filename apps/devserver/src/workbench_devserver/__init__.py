"""Workbench dev server: serving, tracker and agent in one ASGI app, plus the end-to-end demo.

``workbench dev`` runs :func:`create_app` under uvicorn; ``workbench demo`` drives it through the
client SDK. The parts are composed defensively: a package that is not installed shows as such on
the landing page instead of stopping the server.
"""

from __future__ import annotations

from ._components import Component, build_components
from ._settings import DevServerSettings, is_loopback
from .app import create_app

__all__ = ["Component", "DevServerSettings", "build_components", "create_app", "is_loopback"]
