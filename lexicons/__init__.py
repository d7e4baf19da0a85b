"""Bundled lexicon files (data package; see README.md here)."""
