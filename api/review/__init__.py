"""The DSL review workspace: pages under /review and JSON under /v1/review.

``install(app)`` adds both routers and the static files to a FastAPI app; the HTTP
service's ``create_app()`` calls it. The workspace uses ``app.state.store`` when the
service has built one, else a store from ``flagger.settings``.

It suggests; people decide. Nothing here refers anyone or contacts any agency, and a
suggestion changes state only through a named reviewer's decision.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .routes import json_router, page_router

STATIC_DIR = Path(__file__).with_name("static")

__all__ = ["install", "page_router", "json_router"]


def install(app: FastAPI) -> None:
    """Include the review pages, the JSON review API and the static files in ``app``."""
    if getattr(app.state, "review_installed", False):
        return
    app.include_router(page_router)
    app.include_router(json_router)
    app.mount("/review/static", StaticFiles(directory=STATIC_DIR), name="review-static")
    app.state.review_installed = True
