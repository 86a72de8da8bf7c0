"""What a conclusion copies of a COMPLETE project, besides the files: which clips (the user's
``opus-copy-top`` / ``opus-min-score``) and each copy's caption files.

The transcript is read once per conclusion, through the request budget like every OpusClip call,
and only when some clip is to be copied. A project without one (``data[0]`` null, a 404) or a read
that fails gets no caption files and ``"transcriptAvailable": false``: captions are never worth a
failed video. Only a call the budget or OpusClip's rate limit refused is tried again with the
conclusion, as any of its calls would be (nothing is copied before the transcript is read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opus_pipeline import logs
from opus_pipeline.domain import captions, manifest
from opus_pipeline.domain.clip_selection import not_selected
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.preferences import Preferences
from opus_pipeline.domain.record import VideoRecord
from opus_pipeline.errors import BudgetSpentError, OpusApiError, RateLimitedError, TransientError
from opus_pipeline.opus.clip_download import STORAGE_FAILURES
from opus_pipeline.runtime import Services

CAPTION_TYPES = {"srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


@dataclass(frozen=True)
class CopyPlan:
    """Per clip (best first, as the conclusion lists them) why it is not copied, or None; the
    transcript's words (None: there is none, or it was not read); whether filler words stay."""

    skipped: tuple[str | None, ...]
    words: list[captions.Word] | None
    transcript_read: bool
    keep_fillers: bool

    @property
    def transcript_available(self) -> bool | None:
        """For the manifest's top: None when nothing was copied, so nothing was asked."""
        return self.words is not None if self.transcript_read else None


def plan_copies(
    services: Services, record: VideoRecord, clips: Sequence[Mapping[str, Any]], log: logs.Logger
) -> CopyPlan:
    """The video's own preferences over the deploy's decide; the transcript is read when a clip is
    to be copied."""
    prefs = Preferences.from_message(record.preferences).over(services.settings.default_preferences)
    skipped = tuple(not_selected(clips, prefs.copyTop, prefs.minScore))
    words = None
    read = any(reason is None for reason in skipped)
    if read:
        words = _read_transcript(services, record.project_id or "", log)
    return CopyPlan(skipped, words, read, keep_fillers=prefs.enableRemoveFillerWords is not True)


def _read_transcript(services: Services, project_id: str, log: logs.Logger) -> list[captions.Word] | None:
    try:
        answer = services.opus.transcript(project_id)
    except (BudgetSpentError, RateLimitedError):
        raise  # no call to spare now, not no transcript: the conclusion is tried again, as for any call
    except (OpusApiError, TransientError) as exc:
        log.warning(
            f"the transcript of project {project_id} could not be read ({exc}); its clips get no caption files",
            event="transcript_unavailable",
            reason=exc.reason,
        )
        return None
    words = captions.transcript_words(answer)
    if words is None:
        log.info(f"OpusClip has no transcript of project {project_id}; no caption files", event="no_transcript")
    return words


def write_captions(
    services: Services, obj: StorageObject, clip: Mapping[str, Any], index: int, plan: CopyPlan, log: logs.Logger
) -> dict[str, Any]:
    """``clips/<stem>.srt`` and ``.vtt`` beside the clip's copy, and the manifest's ``captions`` entry;
    nothing without a transcript or time ranges, or when Cloud Storage refuses a file (logged)."""
    ranges = captions.time_ranges_seconds(clip)
    if plan.words is None or not ranges:
        return {}
    cues = captions.clip_cues(plan.words, ranges, keep_fillers=plan.keep_fillers)
    texts = {"srt": captions.to_srt(cues), "vtt": captions.to_vtt(cues)}
    bucket = services.storage.bucket(services.settings.output_bucket)
    written = {}
    try:
        for kind, text in texts.items():
            blob = bucket.blob(manifest.caption_object_name(obj, clip, index, kind))
            blob.upload_from_string(text.encode(), content_type=CAPTION_TYPES[kind])
            written[kind] = f"gs://{bucket.name}/{blob.name}"
    except STORAGE_FAILURES as exc:
        log.warning(f"no caption files for a clip of {obj.uri}: {type(exc).__name__}", event="captions_not_written")
        return {}
    return {"captions": written}
