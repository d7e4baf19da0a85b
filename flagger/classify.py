"""Sentence and note classifiers behind one small interface (filled in by issue #4)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def load_classifier(name: str, *, models_dir: str | None = None):
    """Load a trained classifier by name, or None when no artefacts are bundled yet."""
    log.warning("no trained model bundled yet; scanning with lexicons and context only")
    return None
