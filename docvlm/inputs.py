"""Finding the documents to process and loading them as upright RGB images.

Discovery (`discover`) turns EVERY file under the data folder into a `Document`, so that every file
ends as a record, good or error: files with an unsupported extension too (loading them raises
"unsupported_format"). Skipped: names matching the `ignore` patterns (dotfiles and dot-folders, the
ground-truth and report files) in the file's name or any folder name on its way. Symlinked folders
are followed, each real folder once. A PDF becomes one Document per page ("name.pdf#page=2",
1-based); a PDF whose pages cannot be counted (encrypted, corrupt, unreadable) becomes ONE Document
whose loading raises the reason. Nothing is decoded at discovery, so it is cheap on every rank.

Loading (`load_image`) never crashes on a bad file: every problem is an `InputError` with a short
`kind` (for summary counts) and a one-line message naming the document. Choices:
- Multi-frame GIF/TIFF: the first frame. EXIF orientation is applied (the model sees it upright).
- 16-bit images are scaled to 8 bits (Pillow's own conversion clips them to white); transparency is
  composited on white (documents are printed on white paper).
- The pixel limit is checked on the header (or the PDF page size) BEFORE decoding: a decompression
  bomb costs nothing. Tiny images (1x1) load: the model sees an empty page and answers NOT_FOUND.
  An aspect ratio above `max_aspect` (default 200, Qwen-VL's processor limit) is an error here rather
  than a processor exception in the middle of a batch.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
from PIL import Image, ImageOps, UnidentifiedImageError

from docvlm import fingerprint
from docvlm.errors import UserError

log = logging.getLogger(__name__)
# Documents load in parallel threads (pipeline/document_pipeline.py). Two things are process-wide:
# pdfium is not thread-safe (one render at a time), and warning filters are global (set once here:
# docvlm's own pixel limit decides, Pillow's bomb warning is noise).
_PDFIUM = threading.Lock()
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Ground truth, reports and hidden files live next to the images; they are not documents.
DEFAULT_IGNORE = (".*", "*.csv", "*.jsonl", "*.json", "*.md")
PDF_SUFFIX = ".pdf"
# The Pillow decoders that may run. The content decides (a JPEG saved as .png loads), but only
# among these: Pillow's EPS plugin, for one, runs Ghostscript on whatever a file claims to be.
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "WEBP", "GIF", "PPM")  # JPEG covers MPO
ERROR_KINDS = (
    "missing", "broken_link", "unreadable", "not_a_file", "unsupported_format", "empty_file",
    "truncated", "not_an_image", "corrupt_image", "too_large", "extreme_aspect",
    "encrypted_pdf", "corrupt_pdf",
)
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8", b"GIF8", b"II*\x00", b"MM\x00*", b"BM", b"RIFF")


class InputError(Exception):
    """A document that cannot be read; becomes an error record, the run goes on."""

    def __init__(self, doc_id: str, kind: str, reason: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown input error kind {kind!r}; one of {ERROR_KINDS}")
        self.doc_id, self.kind = doc_id, kind
        self.reason = " ".join(str(reason).split())  # one line, whatever the library said
        super().__init__(f"{doc_id}: {self.reason}")

    def __reduce__(self):  # picklable with its three arguments (Exception pickles only `args`)
        return InputError, (self.doc_id, self.kind, self.reason)


@dataclass(frozen=True)
class Document:
    index: int  # position in the input order (the order of results.jsonl)
    id: str  # path relative to the data folder, POSIX style (+ "#page=N" for PDFs): resume and ground-truth key
    path: Path  # the real path (the id escapes undecodable bytes, the path keeps them)
    page: int | None = None  # 1-based PDF page; None for images and for PDFs unreadable at discovery
    format: str = "image"  # "image", "pdf" or "unsupported" (loading raises unsupported_format)
    fingerprint: str = ""  # the file's size and mtime: resume redoes a changed file (docvlm/fingerprint.py)


@dataclass(frozen=True)
class LoadOptions:
    pdf_dpi: int = 150
    max_pixels: int = 89_478_485  # Pillow's own bomb threshold (a 600 dpi A3 scan is ~70 M)
    max_aspect: float = 200.0

    def __post_init__(self) -> None:
        if self.pdf_dpi <= 0 or self.max_pixels <= 0 or self.max_aspect < 1:
            raise ValueError(f"load options: pdf_dpi and max_pixels must be > 0, max_aspect >= 1; got {self}")


# ---------------------------------------------------------------- discovery


def discover(data_dir: str | Path, extensions: Sequence[str], ignore: Sequence[str] = DEFAULT_IGNORE,
             exclude: Sequence[Path] = ()) -> list[Document]:
    """Every file under `data_dir` (but `ignore`d names) as Documents, sorted by id: same on every rank.

    `extensions` are the supported formats (".pdf" among them enables PDF pages); other files become
    Documents whose loading raises unsupported_format. `ignore`: fnmatch patterns, case-insensitive,
    matched against the file name and every folder name below `data_dir`. `exclude`: folders left out
    whole, matched as the same folder on disk (not by name): an output folder inside the data folder.
    """
    root = Path(data_dir)
    if not root.exists():
        raise UserError(f"data.dir={root} does not exist: give the folder of your documents with data.dir=FOLDER")
    if not root.is_dir():
        raise UserError(f"data.dir={root} is not a folder: give the folder that holds your documents")
    wanted = {e.lower() for e in extensions}
    docs: list[Document] = []
    for path in _walk(root, ignore, _folder_keys(exclude)):
        docs.extend(_documents(root, path, wanted))
    if not docs:
        raise UserError(f"data.dir={root} holds no documents (ignoring {list(ignore)}): put them there, or give the folder that holds them")
    # The file's own bytes break ties: two files can get the same id (see _unique_ids).
    docs.sort(key=lambda d: (d.id.rsplit("#page=", 1)[0] if d.page else d.id, d.page or 0, os.fsencode(d.path)))
    return [replace(d, index=i) for i, d in enumerate(_unique_ids(docs))]


def _folder_keys(folders: Sequence[Path]) -> set[tuple[int, int]]:
    """(device, inode) of each existing folder: the same folder whatever the path (symlinks, "..")."""
    keys = set()
    for folder in folders:
        try:
            info = os.stat(folder)
        except OSError:
            continue  # not there: nothing to leave out
        keys.add((info.st_dev, info.st_ino))
    return keys


def _walk(root: Path, ignore: Sequence[str], excluded: set[tuple[int, int]] = frozenset()) -> list[Path]:
    """Files (anything not a folder) under root; a folder that cannot be listed is returned too."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set(excluded)  # real folders visited (symlink cycles end here) or left out

    def unlistable(err: OSError) -> None:
        if Path(err.filename) == root:
            raise UserError(f"data.dir={root} cannot be listed ({err.strerror}): allow reading it, or give another folder") from err
        found.append(Path(err.filename))  # a record says so, rather than its files vanishing

    for folder, dirs, names in os.walk(root, onerror=unlistable, followlinks=True):
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not _ignored(d, ignore))
        found.extend(Path(folder, n) for n in names if not _ignored(n, ignore))
    return found


def _ignored(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


def _documents(root: Path, path: Path, wanted: set[str]) -> list[Document]:
    doc_id = _id_of(path.relative_to(root))
    suffix = path.suffix.lower()
    stamp = fingerprint.of_file(path)
    if suffix not in wanted:
        return [Document(-1, doc_id, path, None, "unsupported", stamp)]
    if suffix != PDF_SUFFIX:
        return [Document(-1, doc_id, path, fingerprint=stamp)]
    pages = _pdf_page_count(path)
    if not pages:  # encrypted, corrupt or unreadable: one document, loading tells why
        return [Document(-1, doc_id, path, None, "pdf", stamp)]
    return [Document(-1, f"{doc_id}#page={n}", path, n, "pdf", stamp) for n in range(1, pages + 1)]


def _id_of(relative: Path) -> str:
    """POSIX path, JSON-safe: bytes that are not UTF-8 show as \\xNN (os.fsdecode kept them as surrogates)."""
    return os.fsencode(relative.as_posix()).decode("utf-8", "backslashreplace")


def _pdf_page_count(path: Path) -> int:
    """Pages of a readable PDF; 0 when it cannot be opened (never raises: discovery must not fail)."""
    if not path.is_file():  # a FIFO named x.pdf would block the open forever
        return 0
    try:
        with _PDFIUM, path.open("rb") as handle:
            pdf = pdfium.PdfDocument(handle)
            try:
                return len(pdf)
            finally:
                pdf.close()
    except Exception:  # noqa: BLE001 - any failure is diagnosed again, and reported, at load time
        return 0


def _unique_ids(docs: list[Document]) -> list[Document]:
    """Distinct files keep distinct ids. Ids can clash: a file literally named "x.pdf#page=1" beside
    page 1 of x.pdf, or a name with a literal backslash beside one with an undecodable byte. The first
    in sorted order keeps the id; each later one gets "#duplicate=N" added (N = 2, 3, ...), with a
    warning naming both files, and is processed like any other file: one odd name never stops a run."""
    taken = {doc.id for doc in docs}
    first: dict[str, Path] = {}
    unique = []
    for doc in docs:
        if doc.id not in first:
            first[doc.id] = doc.path
            unique.append(doc)
            continue
        n = 2
        while f"{doc.id}#duplicate={n}" in taken:
            n += 1
        new_id = f"{doc.id}#duplicate={n}"
        taken.add(new_id)
        log.warning("data.dir: %s and %s both map to the id %r; the second is recorded as %r",
                    first[doc.id], doc.path, doc.id, new_id)
        unique.append(replace(doc, id=new_id))
    return unique


def safe_name(doc_id: str) -> str:
    """A file name for `doc_id` that stays inside its folder: [A-Za-z0-9._-] only, no "..", no leading
    dot; a short hash of the id is appended when anything had to change, so names stay unique."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip(".")[:120] or "_"
    if cleaned == doc_id:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(doc_id.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


# ---------------------------------------------------------------- loading


def load_image(doc: Document, options: LoadOptions | None = None) -> Image.Image:
    """The document as an upright RGB image; InputError (with a `kind`) names the problem."""
    options = options or LoadOptions()
    _check_file(doc)
    if doc.format == "pdf":
        return _render_pdf_page(doc, options)
    return _decode_image(doc, options)


def _check_file(doc: Document) -> None:
    """Problems of the file itself, found without decoding: link, permissions, type, format, size."""
    try:
        info = doc.path.stat()
        if stat.S_ISREG(info.st_mode):  # never open a FIFO: it would block
            doc.path.open("rb").close()  # opening is the only honest permission check
    except FileNotFoundError:
        if doc.path.is_symlink():
            raise InputError(doc.id, "broken_link", f"broken symbolic link to {os.readlink(doc.path)}") from None
        raise InputError(doc.id, "missing", "file no longer exists") from None
    except OSError as err:  # PermissionError, a symlink loop (ELOOP), an I/O error
        kind = "broken_link" if doc.path.is_symlink() and err.errno == errno.ELOOP else "unreadable"
        raise InputError(doc.id, kind, f"cannot open: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(doc.id, "unreadable", "is a folder that cannot be listed")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(doc.id, "not_a_file", f"is a {_file_type(info.st_mode)}, not a regular file")
    if doc.format == "unsupported":
        raise InputError(doc.id, "unsupported_format", f"unsupported format {doc.path.suffix or '(no extension)'}")
    if info.st_size == 0:
        raise InputError(doc.id, "empty_file", "empty file (0 bytes)")


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _check_size(doc: Document, width: int, height: int, options: LoadOptions) -> None:
    """Before any pixel is decoded: the bomb guard and the aspect-ratio limit."""
    if width < 1 or height < 1:
        raise InputError(doc.id, "corrupt_image", f"has no pixels ({width}x{height})")
    if width * height > options.max_pixels:
        raise InputError(doc.id, "too_large", f"{width}x{height} = {width * height} pixels exceeds the limit of "
                                              f"{options.max_pixels} (decompression-bomb guard)")
    aspect = max(width, height) / min(width, height)
    if aspect > options.max_aspect:
        raise InputError(doc.id, "extreme_aspect", f"{width}x{height}: aspect ratio {aspect:.0f} exceeds "
                                                   f"{options.max_aspect:g}, which the models cannot take")


def _decode_image(doc: Document, options: LoadOptions) -> Image.Image:
    try:
        with Image.open(doc.path, formats=IMAGE_FORMATS) as img:
            _check_size(doc, *img.size, options)
            img.load()  # the first frame of a GIF/TIFF
            return _to_rgb(_upright(doc, img))
    except InputError:
        raise
    except (Image.DecompressionBombError, MemoryError) as err:
        raise InputError(doc.id, "too_large", f"too large to decode: {err}") from None
    except UnidentifiedImageError:
        kind = "corrupt_image" if _looks_like_image(doc.path) else "not_an_image"
        raise InputError(doc.id, kind, f"not a readable image (accepted: {', '.join(IMAGE_FORMATS)})") from None
    except Exception as err:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error...
        kind = "truncated" if "truncated" in str(err).lower() else "corrupt_image"
        raise InputError(doc.id, kind, f"cannot decode image: {type(err).__name__}: {err}") from None


def _looks_like_image(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4).startswith(_IMAGE_MAGIC)


def _upright(doc: Document, img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception as err:  # noqa: BLE001 - a broken EXIF block should not cost the document
        log.warning("%s: EXIF orientation ignored: %s", doc.id, err)
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit int/float) grey to 8 bits; values above 255 are taken as a 16-bit range."""
    values = np.asarray(img)
    if values.size and values.max() > 255:
        values = np.clip(values, 0, 65535) // 257
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")


def _render_pdf_page(doc: Document, options: LoadOptions) -> Image.Image:
    try:
        with _PDFIUM, doc.path.open("rb") as handle:
            pdf = pdfium.PdfDocument(handle)
            try:
                return _render_page(doc, pdf, options)
            finally:
                pdf.close()
    except InputError:
        raise
    except pdfium.PdfiumError as err:
        if err.err_code in (pdfium_raw.FPDF_ERR_PASSWORD, pdfium_raw.FPDF_ERR_SECURITY):
            raise InputError(doc.id, "encrypted_pdf", f"encrypted PDF, cannot be opened without a password ({err})") from None
        raise InputError(doc.id, "corrupt_pdf", f"not a readable PDF: {err}") from None
    except MemoryError as err:
        raise InputError(doc.id, "too_large", f"too large to render: {err}") from None
    except Exception as err:  # noqa: BLE001 - a document's failure must never stop the rank
        raise InputError(doc.id, "corrupt_pdf", f"cannot render PDF: {type(err).__name__}: {err}") from None


def _render_page(doc: Document, pdf: pdfium.PdfDocument, options: LoadOptions) -> Image.Image:
    page_no = doc.page or 1  # None: unreadable at discovery but readable now (the file changed)
    if len(pdf) == 0:
        raise InputError(doc.id, "corrupt_pdf", "PDF has no pages")
    if page_no > len(pdf):
        raise InputError(doc.id, "corrupt_pdf", f"PDF has {len(pdf)} pages, not {page_no} (changed since discovery?)")
    page = pdf[page_no - 1]
    try:
        scale = options.pdf_dpi / 72  # PDF sizes are in points, 72 a inch
        width_pt, height_pt = page.get_size()
        _check_size(doc, round(width_pt * scale), round(height_pt * scale), options)
        bitmap = page.render(scale=scale)
        try:
            return bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer is freed below
        finally:
            bitmap.close()
    finally:
        page.close()
