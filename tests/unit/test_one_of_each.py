"""One of each mechanism: a second compare-and-swap, publish or exception family fails here.

Each check reads the library's source, so a copy written next to the original is found the day
it is written, not the day the two drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "functions" / "opus_pipeline"


def sources() -> dict[str, str]:
    return {str(p.relative_to(LIBRARY)): p.read_text() for p in LIBRARY.rglob("*.py")}


def where(pattern: str) -> list[str]:
    return sorted(name for name, text in sources().items() if re.search(pattern, text))


def test_only_the_cas_module_writes_with_a_generation_precondition() -> None:
    """The status mirror's precondition pins the *source's* generation on a metadata patch (a
    newer upload is not stamped with an older one's status); it advances nothing."""
    assert where(r"if_generation_match") == ["gcs/cas.py", "gcs/status_mirror.py"]
    assert where(r"upload_from_string\([^)]*if_generation_match") == ["gcs/cas.py"]


def test_only_the_publish_module_talks_to_pubsub() -> None:
    assert where(r"pubsub_v1") == ["pubsub/publish.py"]
    assert where(r"\.result\(timeout=") == ["pubsub/publish.py"]


def test_every_exception_class_is_defined_in_errors() -> None:
    defined_elsewhere = []
    for name, text in sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and name != "errors.py":
                defined_elsewhere.append(f"{name}: {node.name}")
    assert defined_elsewhere == []


# Signals that never leave the code that raises them: each is caught and turned into a permanent or
# transient outcome by its caller (a lost CAS, a session to open again, a video overwritten while it
# streamed, a bug in a transition, a CLI message); the base class of them all is ``PipelineError``.
INTERNAL_SIGNALS = {"PipelineError", "ConflictError", "SessionExpiredError", "SupersededError"}
INTERNAL_SIGNALS |= {"IllegalTransitionError", "CliError", "ClaimLostError"}


def test_every_error_the_pipeline_defines_says_whether_to_retry() -> None:
    """Each class is permanent or transient, or one of the few internal signals named above;
    configuration errors stop an instance before any event is taken."""
    from opus_pipeline import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert classes
    for cls in classes:
        if cls is errors.ConfigError or cls.__name__ in INTERNAL_SIGNALS:
            continue
        assert issubclass(cls, errors.PermanentError | errors.TransientError), cls


def test_the_claim_is_the_one_way_a_use_case_takes_a_lease() -> None:
    assert where(r"lease_owner=lease\.owner") == ["gcs/claims.py"]
    assert where(r"\bclaim\(self\.svc\.ledger") == ["usecases/leased.py"]


def test_the_upload_session_owns_its_state() -> None:
    assert where(r"\.invalid\s*=") == ["opus/resumable.py"]
