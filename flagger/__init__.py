"""flagger: suggests safeguarding concerns in case notes, with the evidence highlighted,
for a Designated Safeguarding Lead to review. It never refers, confirms or contacts anyone."""

__version__ = "0.1.0"

from .engine import Flagger  # noqa: E402
from .schema import Concern, Evidence, NoteResult  # noqa: E402

__all__ = ["Flagger", "Concern", "Evidence", "NoteResult", "__version__"]
