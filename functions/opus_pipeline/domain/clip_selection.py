"""Which clips are copied: all of them, or the best only when a user asked (``opus-copy-top``,
``opus-min-score``, or their ``OPUS_DEFAULT_*`` variables).

Pure logic. Clips come best first (``manifest.best_first``). ``copy_top`` N keeps the first N of
that order; ``min_score`` keeps clips whose OpusClip ``score`` is at least that, and a clip without
a score cannot show it is (OpusClip's scores are not in its API description, so some lists lack
them). Both set: a clip must meet both. A clip left out stays in the manifest, not copied, with
an error starting ``not-selected``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opus_pipeline.domain.numbers import finite

NOT_SELECTED = "not-selected"


def not_selected(
    clips: Sequence[Mapping[str, Any]], copy_top: int | None = None, min_score: int | None = None
) -> list[str | None]:
    """For each clip (best first), why it is not to be copied, or None when it is."""
    reasons: list[str | None] = []
    for position, clip in enumerate(clips, start=1):
        score = finite(clip.get("score"))
        if copy_top is not None and position > copy_top:
            reasons.append(f"{NOT_SELECTED}: clip {position} of the best first is past opus-copy-top={copy_top}")
        elif min_score is not None and score is None:
            reasons.append(f"{NOT_SELECTED}: OpusClip gave this clip no score to meet opus-min-score={min_score}")
        elif min_score is not None and score is not None and score < min_score:
            reasons.append(f"{NOT_SELECTED}: its score {score:g} is below opus-min-score={min_score}")
        else:
            reasons.append(None)
    return reasons
