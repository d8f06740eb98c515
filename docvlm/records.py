"""The per-document result record: what results.jsonl holds, one per input document."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass
class DocumentRecord:
    index: int  # input order
    image: str  # document id: path relative to data.dir
    document_type: Optional[str] = None
    fields: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # model text per stage (detect, extract, bank_*)
    details: dict[str, Any] = field(default_factory=dict)  # detection evidence, bank plan, ...
    rank: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds; batch time shared per document
    error: Optional[dict[str, str]] = None  # {"kind", "stage", "message"} or None
    attempts: int = 1
    evaluation: Optional[dict[str, Any]] = None  # per-document scores when ground truth is given
    ungrounded_fields: Optional[list[str]] = None  # validation.grounding: values not found on the page
    # Resume reuses a record only when both match this run (docvlm/fingerprint.py): the document file's
    # size and mtime, and the digest of the settings that change answers.
    document_fingerprint: Optional[str] = None
    settings_fingerprint: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DocumentRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def failed(cls, index: int, image: str, stage: str, err: BaseException, rank: int) -> "DocumentRecord":
        kind = getattr(err, "kind", None) or type(err).__name__
        message = " ".join(str(err).split()) or type(err).__name__  # one line
        return cls(index=index, image=image, rank=rank, error={"kind": kind, "stage": stage, "message": message})
