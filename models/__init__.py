"""Bundled model artefacts (data package; see MODEL_CARD.md)."""
