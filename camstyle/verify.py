"""Check a camstyle folder against the expected file set: missing, extra, unreadable files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from camstyle.data import CameraSample, is_readable_image
from camstyle.generate import MANIFEST_DIR, expected_outputs


@dataclass
class VerifyReport:
    """Names (relative to the folder) in each failure class; ``ok`` when all are empty."""

    folder: str
    expected: int
    missing: List[str] = field(default_factory=list)
    extra: List[str] = field(default_factory=list)
    unreadable: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.unreadable)

    def summary(self, limit: int = 10) -> str:
        lines = [f"{self.folder}: {self.expected} expected, {len(self.missing)} missing, "
                 f"{len(self.extra)} extra, {len(self.unreadable)} unreadable"]
        for label, names in (("missing", self.missing), ("extra", self.extra),
                             ("unreadable", self.unreadable)):
            lines += [f"  {label}: {name}" for name in names[:limit]]
            if len(names) > limit:
                lines.append(f"  ... {len(names) - limit} more {label}")
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, object]:
        return {"folder": self.folder, "expected": self.expected, "ok": self.ok,
                "missing": self.missing, "extra": self.extra, "unreadable": self.unreadable}


def verify_folder(samples: Sequence[CameraSample], folder: str | Path, num_cameras: int,
                  decode: bool = True) -> VerifyReport:
    """Compare ``folder`` with the outputs expected for ``samples``; decode each present file.

    Every file in the folder that is not an expected output (temporaries included) is extra;
    the manifest folder is not part of the file set.
    """
    folder = Path(folder)
    expected = expected_outputs(samples, num_cameras)
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST_DIR} if folder.is_dir() \
        else set()
    report = VerifyReport(str(folder), len(expected),
                          missing=sorted(set(expected) - present),
                          extra=sorted(present - set(expected)))
    if decode:
        report.unreadable = sorted(n for n in present & set(expected)
                                   if not is_readable_image(folder / n))
    return report
