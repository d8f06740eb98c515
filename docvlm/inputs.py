"""Finding the documents to process and loading them as upright RGB images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageOps


class InputError(Exception):
    """A document that cannot be read; becomes an error record, the run goes on."""


@dataclass(frozen=True)
class Document:
    index: int  # position in the input order (the order of results.jsonl)
    id: str  # path relative to the data folder, POSIX style: the key for resume and ground truth
    path: Path


def discover(data_dir: str | Path, extensions: Sequence[str]) -> list[Document]:
    """All files under `data_dir` with a known extension, sorted by relative path (same on every rank)."""
    root = Path(data_dir)
    if not root.exists():
        raise FileNotFoundError(f"data.dir={root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"data.dir={root} is not a folder")
    wanted = {e.lower() for e in extensions}
    paths = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in wanted and not p.is_dir()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not paths:
        raise FileNotFoundError(f"data.dir={root} holds no documents with extensions {sorted(wanted)}")
    return [Document(i, p.relative_to(root).as_posix(), p) for i, p in enumerate(paths)]


def load_image(doc: Document) -> Image.Image:
    """Open a document image upright (EXIF orientation applied) in RGB; InputError names the problem."""
    try:
        with Image.open(doc.path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            return upright.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"{doc.id}: cannot read image: {err}") from err
