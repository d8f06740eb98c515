"""Discovery and loading over a bad-input corpus that the tests generate themselves (issue 4, part 4)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from docvlm.errors import UserError
from docvlm.inputs import (
    DEFAULT_IGNORE, ERROR_KINDS, Document, InputError, LoadOptions, discover, load_image, safe_name,
)

EXTENSIONS = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pdf"]
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
NOBODY = 65534


# ---------------------------------------------------------------- file makers


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _noise(size: tuple[int, int]) -> Image.Image:  # noise: truncation always cuts real pixel data
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with a tiny IDAT: the bomb's shape."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF from raw object bodies (1-based), with a correct xref table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def _encrypted_pdf() -> bytes:
    """Standard security handler whose /U entry does not match the empty password: needs a password.
    (pypdfium2 cannot write encrypted PDFs, so the file is written by hand.)"""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
               b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>" % (b"11" * 32, b"22" * 32)]
    file_id = b"<%s>" % (b"33" * 16)
    return _pdf(objects, b"/Encrypt 4 0 R /ID [%s %s] " % (file_id, file_id))


def _multi_page_pdf() -> bytes:
    pages = [Image.new("RGB", (144, 72), color) for color in (RED, (0, 255, 0), BLUE)]
    return _encode(pages[0], "PDF", resolution=72, save_all=True, append_images=pages[1:])


def _exif_rotated_jpeg() -> bytes:
    """Stored 200x100 with a black marker top-left; EXIF orientation 6: shown rotated 90 degrees clockwise."""
    img = Image.new("RGB", (200, 100), WHITE)
    img.paste((0, 0, 0), (0, 0, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def _palette_alpha_png() -> bytes:
    img = Image.new("P", (40, 40), 0)
    img.putpalette([0, 255, 0, *RED] + [0] * 762)  # index 0 green (transparent), 1 red
    img.paste(1, (0, 0, 20, 40))
    return _encode(img, "PNG", transparency=0)


def _rgba_png() -> bytes:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent black: must become white, not black
    img.paste((*BLUE, 255), (0, 0, 20, 40))
    return _encode(img, "PNG")


def _sixteen_bit_png() -> bytes:
    return _encode(Image.fromarray(np.full((30, 40), 30000, dtype=np.uint16)), "PNG")


def _multi_frame(fmt: str) -> bytes:
    frames = [Image.new("RGB", (40, 40), color) for color in (RED, BLUE)]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:])


# name -> (bytes, expected): "ok" or the InputError kind. Special files are made in `corpus`.
def _regular_files() -> dict[str, tuple[bytes, str]]:
    white = Image.new("RGB", (300, 200), WHITE)
    jpeg, png = _encode(_noise((300, 200)), "JPEG"), _encode(_noise((300, 200)), "PNG")
    return {
        "good.png": (_encode(white, "PNG"), "ok"),
        "good.JPG": (_encode(white, "JPEG"), "ok"),
        "jpeg_named.png": (_encode(white, "JPEG"), "ok"),  # content decides, not the name
        "zero.jpg": (b"", "empty_file"),
        "zero.pdf": (b"", "empty_file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "header_only.png": (png[:20], "truncated"),
        "garbled.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "corrupt_image"),
        "text.png": (b"this is not an image\n" * 10, "not_an_image"),
        "eps_named.png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),
        "letter.docx": (b"PK\x03\x04 not really", "unsupported_format"),
        "noextension": (b"data", "unsupported_format"),
        "bomb.png": (_png_header(100_000, 100_000), "too_large"),
        "bomb_small.png": (_png_header(10_000, 10_000), "too_large"),  # under Pillow's own error limit
        "cmyk.jpg": (_encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"), "ok"),
        "sixteen_bit.png": (_sixteen_bit_png(), "ok"),
        "palette_alpha.png": (_palette_alpha_png(), "ok"),
        "rgba.png": (_rgba_png(), "ok"),
        "multi.gif": (_multi_frame("GIF"), "ok"),
        "multi.tiff": (_multi_frame("TIFF"), "ok"),
        "exif_rotated.jpg": (_exif_rotated_jpeg(), "ok"),
        "one_pixel.png": (_encode(Image.new("RGB", (1, 1), WHITE), "PNG"), "ok"),
        "tall_100x20000.png": (_encode(Image.new("L", (100, 20000), 255), "PNG"), "ok"),
        "taller_100x25000.png": (_encode(Image.new("L", (100, 25000), 255), "PNG"), "extreme_aspect"),
        "grey.png": (_encode(Image.new("L", (40, 40), 90), "PNG"), "ok"),
        "grey.bmp": (_encode(Image.new("L", (40, 40), 90), "BMP"), "ok"),
        "page.webp": (_encode(white, "WEBP"), "ok"),
        "reçu.png": (_encode(white, "PNG"), "ok"),
        "multi.pdf": (_multi_page_pdf(), "ok"),  # 3 documents
        "encrypted.pdf": (_encrypted_pdf(), "encrypted_pdf"),
        "corrupt.pdf": (b"%PDF-1.4\nnot really a pdf at all\n", "corrupt_pdf"),
        "huge_page.pdf": (_encode(Image.new("RGB", (200, 200), WHITE), "PDF", resolution=1), "too_large"),
        "sub/nested.png": (_encode(white, "PNG"), "ok"),
    }


NON_UTF8 = b"caf\xe9.png"  # Latin-1 bytes: not valid UTF-8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The bad-input folder and id -> expected outcome ("ok" or an InputError kind)."""
    root = tmp_path_factory.mktemp("corpus")
    expected = {}
    for name, (data, outcome) in _regular_files().items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(data)
        expected[name] = outcome
    expected.update({f"multi.pdf#page={n}": "ok" for n in (1, 2, 3)})
    expected["huge_page.pdf#page=1"] = expected.pop("huge_page.pdf")  # readable: its page is a document
    del expected["multi.pdf"]
    (root / os.fsdecode(NON_UTF8)).write_bytes(_encode(Image.new("RGB", (20, 20), WHITE), "PNG"))
    expected["caf\\xe9.png"] = "ok"
    os.symlink(root / "missing-target.png", root / "dangling.png")
    expected["dangling.png"] = "broken_link"
    os.symlink("loop.png", root / "loop.png")
    expected["loop.png"] = "broken_link"
    os.symlink(root / "good.png", root / "link_to_good.png")
    expected["link_to_good.png"] = "ok"
    os.mkfifo(root / "fifo.png")  # opening it would block forever
    expected["fifo.png"] = "not_a_file"
    for ignored in ("ground_truth.csv", "truth.JSONL", "meta.json", "README.md", ".DS_Store", ".hidden/x.png"):
        (root / ignored).parent.mkdir(exist_ok=True)
        (root / ignored).write_bytes(b"x")
    return root, expected


def _outcome(doc: Document, options: LoadOptions | None = None) -> str:
    try:
        load_image(doc, options)
    except InputError as err:
        assert err.kind in ERROR_KINDS
        return err.kind
    return "ok"


# ---------------------------------------------------------------- the corpus, end to end


def test_every_file_is_one_document_with_the_right_outcome(corpus: tuple[Path, dict[str, str]]) -> None:
    root, expected = corpus
    docs = discover(root, EXTENSIONS)
    assert [d.index for d in docs] == list(range(len(docs)))
    assert sorted(d.id for d in docs) == sorted(expected)  # each file once; ignored names absent
    assert {d.id: _outcome(d) for d in docs} == expected


def test_errors_are_one_line_naming_the_document(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    for doc in discover(root, EXTENSIONS):
        try:
            load_image(doc)
        except InputError as err:
            message = str(err)
            assert message.startswith(f"{doc.id}: ") and "\n" not in message and len(message) < 400
            assert err.doc_id == doc.id


def test_discovery_is_sorted_and_repeatable(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    first, second = discover(root, EXTENSIONS), discover(root, EXTENSIONS)
    assert first == second
    keys = [(d.id.rsplit("#page=", 1)[0] if d.page else d.id, d.page or 0) for d in first]
    assert keys == sorted(keys)


def test_ids_are_json_safe_and_map_back_to_the_path(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    docs = {d.id: d for d in discover(root, EXTENSIONS)}
    for doc in docs.values():
        json.dumps(doc.id, ensure_ascii=False).encode("utf-8")  # a lone surrogate would raise here
        assert doc.path.is_symlink() or doc.path.exists()
    weird = docs["caf\\xe9.png"]
    assert os.fsencode(weird.path.name) == NON_UTF8
    assert load_image(weird).size == (20, 20)
    assert docs["reçu.png"].id == "reçu.png"  # valid UTF-8 stays as it is


# ---------------------------------------------------------------- what the model sees


def _load(root: Path, doc_id: str, options: LoadOptions | None = None) -> Image.Image:
    doc = next(d for d in discover(root, EXTENSIONS) if d.id == doc_id)
    image = load_image(doc, options)
    assert image.mode == "RGB"
    return image


def test_exif_rotated_jpeg_is_upright(corpus: tuple[Path, dict[str, str]]) -> None:
    image = _load(corpus[0], "exif_rotated.jpg")
    assert image.size == (100, 200)  # portrait after the 90-degree turn
    pixels = np.asarray(image.convert("L"))
    assert pixels[5:25, 75:95].mean() < 40  # stored top-left marker is now top-right
    assert pixels[5:25, 5:25].mean() > 215 and pixels[-25:-5, -25:-5].mean() > 215


def test_colour_modes_become_faithful_rgb(corpus: tuple[Path, dict[str, str]]) -> None:
    root = corpus[0]
    r, g, b = _load(root, "cmyk.jpg").getpixel((20, 20))
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red
    assert _load(root, "sixteen_bit.png").getpixel((5, 5)) == (116, 116, 116)  # 30000/65535, not clipped white
    palette = _load(root, "palette_alpha.png")
    assert palette.getpixel((5, 5)) == RED and palette.getpixel((35, 5)) == WHITE  # transparent -> white
    rgba = _load(root, "rgba.png")
    assert rgba.getpixel((5, 5)) == BLUE and rgba.getpixel((35, 5)) == WHITE
    assert _load(root, "grey.png").getpixel((5, 5)) == (90, 90, 90)
    assert _load(root, "grey.bmp").getpixel((5, 5)) == (90, 90, 90)


@pytest.mark.parametrize("name", ["multi.gif", "multi.tiff"])
def test_multi_frame_images_give_the_first_frame(corpus: tuple[Path, dict[str, str]], name: str) -> None:
    r, g, b = _load(corpus[0], name).getpixel((20, 20))
    assert r > 200 and b < 60


def test_extreme_sizes(corpus: tuple[Path, dict[str, str]]) -> None:
    root = corpus[0]
    assert _load(root, "one_pixel.png").size == (1, 1)
    assert _load(root, "tall_100x20000.png").size == (100, 20000)
    assert _load(root, "taller_100x25000.png", LoadOptions(max_aspect=300)).size == (100, 25000)


def test_pixel_limit_is_configurable(corpus: tuple[Path, dict[str, str]]) -> None:
    doc = next(d for d in discover(corpus[0], EXTENSIONS) if d.id == "good.png")
    assert _outcome(doc, LoadOptions(max_pixels=300 * 200)) == "ok"
    assert _outcome(doc, LoadOptions(max_pixels=300 * 200 - 1)) == "too_large"
    with pytest.raises(ValueError, match="max_pixels"):
        LoadOptions(max_pixels=0)


def test_pdf_pages_render_in_order_at_the_dpi(corpus: tuple[Path, dict[str, str]]) -> None:
    docs = [d for d in discover(corpus[0], EXTENSIONS) if d.path.name == "multi.pdf"]
    assert [(d.id, d.page, d.format) for d in docs] == [(f"multi.pdf#page={n}", n, "pdf") for n in (1, 2, 3)]
    colours = [load_image(d).getpixel((50, 30)) for d in docs]
    assert [int(np.argmax(c)) for c in colours] == [0, 1, 2]  # red, green, blue pages
    assert load_image(docs[0]).size == (300, 150)  # 2x1 inch at the default 150 dpi
    assert load_image(docs[0], LoadOptions(pdf_dpi=72)).size == (144, 72)


def test_single_page_pdf_gets_page_one(tmp_path: Path) -> None:
    Image.new("RGB", (72, 72), WHITE).save(tmp_path / "one.pdf", "PDF", resolution=72)
    assert [(d.id, d.page) for d in discover(tmp_path, EXTENSIONS)] == [("one.pdf#page=1", 1)]


def test_unreadable_pdf_is_one_document(corpus: tuple[Path, dict[str, str]]) -> None:
    docs = [d for d in discover(corpus[0], EXTENSIONS) if d.path.name in ("encrypted.pdf", "corrupt.pdf")]
    assert [(d.id, d.page) for d in docs] == [("corrupt.pdf", None), ("encrypted.pdf", None)]


def test_pdf_without_pdf_extension_configured_is_unsupported(corpus: tuple[Path, dict[str, str]]) -> None:
    docs = [d for d in discover(corpus[0], [".png"]) if d.path.name == "multi.pdf"]
    assert len(docs) == 1 and _outcome(docs[0]) == "unsupported_format"


# ---------------------------------------------------------------- permissions (tests run as root)


@contextmanager
def _unprivileged() -> Iterator[None]:
    """As root, act as `nobody` (root reads any file whatever its mode); otherwise nothing to do."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp folder `nobody` can enter (pytest's own tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="docvlm-inputs-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(path)


def test_unreadable_file_and_folder(open_tmp: Path) -> None:
    png = _encode(Image.new("RGB", (20, 20), WHITE), "PNG")
    for name in ("readable.png", "secret.png", "locked/inside.png"):
        (open_tmp / name).parent.mkdir(exist_ok=True)
        (open_tmp / name).write_bytes(png)
        (open_tmp / name).chmod(0o644)
    (open_tmp / "secret.png").chmod(0o000)
    (open_tmp / "locked").chmod(0o000)
    load_image(discover(open_tmp, EXTENSIONS)[0])  # warm-up: Pillow's plugins import before dropping rights
    with _unprivileged():
        docs = discover(open_tmp, EXTENSIONS)
        outcomes = {d.id: _outcome(d) for d in docs}
    assert outcomes == {"readable.png": "ok", "secret.png": "unreadable", "locked": "unreadable"}


# ---------------------------------------------------------------- discovery rules


def test_ignore_list_is_configurable(corpus: tuple[Path, dict[str, str]]) -> None:
    root, expected = corpus
    ids = {d.id for d in discover(root, EXTENSIONS, ignore=[*DEFAULT_IGNORE, "*.gif", "sub"])}
    assert ids == set(expected) - {"multi.gif", "sub/nested.png"}
    everything = {d.id for d in discover(root, EXTENSIONS, ignore=[])}
    assert {"ground_truth.csv", "README.md", ".DS_Store", ".hidden/x.png"} <= everything


def test_symlinked_folders_are_followed_once(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "real" / "a.png")
    os.symlink(tmp_path / "real", tmp_path / "zlink")  # same folder again: listed once
    os.symlink(tmp_path, tmp_path / "real" / "cycle")  # a cycle must not hang
    assert [d.id for d in discover(tmp_path, EXTENSIONS)] == ["real/a.png"]


def test_folder_errors_at_start(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):  # one line for the user, no traceback
        discover(tmp_path / "nope", EXTENSIONS)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UserError, match="not a folder"):
        discover(tmp_path / "file.png", EXTENSIONS)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "ground_truth.csv").write_text("image_file\n")
    with pytest.raises(UserError, match="holds no documents"):
        discover(empty, EXTENSIONS)


def test_clashing_ids_get_distinct_ids_and_discovery_goes_on(tmp_path: Path) -> None:
    """Issue 20, item 5: one odd name used to stop the whole job (ValueError "rename one")."""
    (tmp_path / os.fsdecode(b"a\xff.png")).write_bytes(b"x")
    (tmp_path / "a\\xff.png").write_bytes(b"x")  # a literal backslash: the same id
    Image.new("RGB", (72, 72), WHITE).save(tmp_path / "x.pdf", "PDF", resolution=72)
    (tmp_path / "x.pdf#page=1").write_bytes(_encode(Image.new("RGB", (8, 8)), "PNG"))  # the id of x.pdf's page 1
    docs = discover(tmp_path, EXTENSIONS)
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids)) == 4
    by_id = {d.id: d for d in docs}
    assert by_id["x.pdf#page=1"].path.name == "x.pdf" and by_id["x.pdf#page=1"].page == 1
    assert by_id["x.pdf#page=1#duplicate=2"].path.name == "x.pdf#page=1"
    assert {by_id["a\\xff.png"].path, by_id["a\\xff.png#duplicate=2"].path} == {
        tmp_path / os.fsdecode(b"a\xff.png"), tmp_path / "a\\xff.png"}
    assert ids == [d.id for d in discover(tmp_path, EXTENSIONS)]  # the same ids on every rank


def test_an_excluded_folder_is_left_out_by_identity_not_by_name(tmp_path: Path) -> None:
    """Issue 20, item 2: output.dir=data/out used to hide every file or folder named "out" anywhere."""
    for name in ("a.png", "out/plot.png", "2024/out/inner.png", "2024/out.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    ids = [d.id for d in discover(tmp_path, EXTENSIONS, exclude=[tmp_path / "2024" / ".." / "out"])]
    assert ids == ["2024/out.png", "2024/out/inner.png", "a.png"]
    os.symlink(tmp_path / "out", tmp_path / "link")  # a link to the excluded folder leads nowhere either
    assert [d.id for d in discover(tmp_path, EXTENSIONS, exclude=[tmp_path / "out"])] == ids


def test_documents_carry_the_size_and_mtime_of_their_file(tmp_path: Path) -> None:
    Image.new("RGB", (72, 72), WHITE).save(tmp_path / "two.pdf", "PDF", resolution=72, save_all=True,
                                           append_images=[Image.new("RGB", (72, 72))])
    (tmp_path / "b.png").write_bytes(b"12345")
    before = {d.id: d.fingerprint for d in discover(tmp_path, EXTENSIONS)}
    assert before["two.pdf#page=1"] == before["two.pdf#page=2"]  # the pages of one file
    assert before["b.png"].startswith("size=5;mtime_ns=")
    os.utime(tmp_path / "b.png", ns=(0, 10**9))
    assert {d.id: d.fingerprint for d in discover(tmp_path, EXTENSIONS)}["b.png"] == "size=5;mtime_ns=1000000000"


def test_input_error_keeps_its_kind_through_pickle() -> None:
    err = InputError("x.png", "truncated", "cannot decode:\nline two")
    assert str(err) == "x.png: cannot decode: line two"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.doc_id, copy.kind, str(copy)) == ("x.png", "truncated", str(err))
    with pytest.raises(ValueError, match="unknown input error kind"):
        InputError("x.png", "oops", "reason")


# ---------------------------------------------------------------- safe file names


@pytest.mark.parametrize("doc_id", [
    "../../etc/passwd", "a/b.png", "..", ".", "", "/abs/path.png", "x.pdf#page=2", "a\\b.png",
    "nul\x00and\nnewline.png", "caf\\xe9.png", "caf\udce9.png", "reçu.png", ".hidden.png", "a" * 500,
])
def test_safe_name_stays_inside_its_folder(doc_id: str, tmp_path: Path) -> None:
    name = safe_name(doc_id)
    assert name and "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
    assert all(ch.isascii() and ch.isprintable() for ch in name) and len(name) <= 140
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_safe_name_is_stable_and_unique() -> None:
    assert safe_name("invoice_001.png") == "invoice_001.png"  # already safe: unchanged
    assert safe_name("a/b.png") == safe_name("a/b.png")
    names = {safe_name(i) for i in ("a/b.png", "a_b.png", "a\\b.png", "a b.png", "a" * 500, "a" * 501)}
    assert len(names) == 6


def test_a_window_loads_in_parallel_threads_with_the_serial_outcomes(corpus: tuple[Path, dict[str, str]]) -> None:
    """The pipeline decodes a window in threads (PDF renders serialised: pdfium is not thread-safe):
    every document's image or error is what loading it alone gives, in input order."""
    from types import SimpleNamespace

    from docvlm.pipeline.document_pipeline import LOAD_THREADS, DocumentPipeline

    root, _ = corpus
    docs = discover(root, EXTENSIONS) * 3  # every PDF page and broken file several times at once
    assert len(docs) > LOAD_THREADS
    pipeline = DocumentPipeline(SimpleNamespace(), batch_size=4, group_window=2, rank=0)  # type: ignore[arg-type]
    items = pipeline._load_window(docs)
    assert [item.doc.id for item in items] == [doc.id for doc in docs]
    for item, doc in zip(items, docs):
        alone = pipeline._load(doc)
        assert item.record.ok == alone.record.ok and item.record.error == alone.record.error
        if item.record.ok:
            assert item.image.tobytes() == alone.image.tobytes()
