"""Typed errors with codes, in one place.

Messages name files, entries, ids and offsets. They never contain note text: case
notes are special-category personal data and error messages end up in logs.
"""

from __future__ import annotations


class FlaggerError(Exception):
    """Base class for every error flagger raises on purpose."""

    code = "E000"

    def __init__(self, message: str):
        super().__init__(f"[{self.code}] {message}")
        self.message = message


class LexiconError(FlaggerError):
    """One or more lexicon or context-rule files are invalid. ``problems`` lists each."""

    code = "E101"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in lexicon files:\n  " + "\n  ".join(self.problems)
        )


class InputRecordError(FlaggerError):
    """A single input record cannot be scanned (no text, wrong type, too long...)."""

    code = "E201"


class InputFileError(FlaggerError):
    """An input file cannot be read at all (missing, unknown format, bad options)."""

    code = "E202"


class ModelError(FlaggerError):
    """A model artefact is missing, fails its checksum, or cannot be loaded."""

    code = "E301"


class StoreError(FlaggerError):
    """The review store refused an operation."""

    code = "E401"


class ConflictError(StoreError):
    """Someone else decided the same item first; nothing was overwritten."""

    code = "E402"


class NotFoundError(StoreError):
    """The requested review item, note, user or key does not exist."""

    code = "E404"


class PermissionDenied(StoreError):
    """The user may not see or act on this item."""

    code = "E403"
