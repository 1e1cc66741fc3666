"""Crashes the fuzz targets found that are not fixed yet.

Each has a regression test in `test_regressions.py` (xfail, strict, same id). The targets
count a matching failure as known instead of failing, so the suite stays green meanwhile;
once the fix lands the regression test passes, strict xfail turns that into a failure, and
both the xfail mark and the entry here go.

A bug is matched narrowly: the exception's type and the innermost frame of imagemesh code
it passed through (`module:function`), or, for a property broken without an exception,
the `Violation`'s kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (ROOT / "libs", ROOT / "services")


Symptom = tuple[type[BaseException] | None, str]
"""(exception type, `module:function` of the innermost imagemesh frame), or (None, the
kind of a `Violation`)."""


@dataclass(frozen=True)
class Known:
    id: str
    summary: str
    """What goes wrong, in one sentence: the regression test's xfail reason."""
    symptoms: tuple[Symptom, ...]
    """How it shows in the targets (one cause can fail in several places)."""


KNOWN: tuple[Known, ...] = ()


def match(exc: BaseException) -> Known | None:
    kind = getattr(exc, "kind", None)
    location = where(exc)
    for bug in KNOWN:
        for exception, place in bug.symptoms:
            if exception is None and kind == place:
                return bug
            if exception is not None and isinstance(exc, exception) and location == place:
                return bug
    return None


def where(exc: BaseException) -> str | None:
    """`module:function` of the innermost frame of imagemesh code the exception left."""
    found = None
    traceback = exc.__traceback__
    while traceback is not None:
        code = traceback.tb_frame.f_code
        path = Path(code.co_filename)
        # Comprehensions and lambdas count as the function they are written in.
        in_product = any(path.is_relative_to(root) for root in PRODUCT)
        if in_product and not code.co_name.startswith("<"):
            package = path.parent.name
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found = f"{module}:{code.co_name}"
        traceback = traceback.tb_next
    return found
