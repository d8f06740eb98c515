"""RapidOCR (ONNX Runtime, CPU) -> text lines with boxes, words spaced as printed.

RapidOCR's steps are run one by one so that the layout rules get clean lines:
- the page's skew is measured from the detected boxes and the boxes are levelled, so that one
  printed row stays one row on a scanned page;
- boxes of one printed line that the detector split in two ("16-12" + "2-2024") are merged before
  recognition, so the line is read once, whole;
- spaces the recognition model drops between words ("TRANSFERFROMAMELIA": its training text has few
  spaces) are put back where the model half-saw them or the line image shows a word-sized gap;
- the model's usual confusions are undone (O/0 in words and numbers, "0ct", "VlC").
The angle classifier is off: pages arrive upright (EXIF applied on loading) and it turns some
upright all-caps lines upside down.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from docvlm.ocr.lines import TextLine


ENGINES = ("rapidocr-onnxruntime", "rapidocr")


@dataclass(frozen=True)
class ReaderSettings:
    engine: str = "rapidocr-onnxruntime"  # the RapidOCR package: rapidocr-onnxruntime 1.4 (PP-OCRv4) or rapidocr (3.x)
    max_side: int = 2000  # larger pages are scaled down first (RapidOCR's own limit)
    min_side: int = 16  # a page smaller than this has no readable text
    min_score: float = 0.5  # recognition confidence below which a line is dropped
    merge_gap: float = 0.15  # boxes of one line closer than this many line heights are one box
    space_prob: float = 0.2  # model's space probability between two characters that makes a space
    space_gap: float = 0.3  # a blank gap this many line heights wide between two characters is a space
    space_prob_weak: float = 0.03  # both a weaker space probability ...
    space_gap_weak: float = 0.18  # ... and a narrower gap make a space too
    letter_spaced: float = 0.16  # a line whose usual letter gap is this wide (line heights) is letter-spaced ...
    space_gap_letters: float = 4.0  # ... there a gap alone makes a space only if this many times that letter gap
    rec_batch: int = 1  # line crops recognised together (on CPU one at a time is fastest: no padding)
    det_max_side: int = 1320  # pages are scaled down to this for detection only (lines are read at full size)
    det_limit_side: int = 736  # the detector scales a page up until its short side is at least this
    det_box_thresh: float = 0.5
    det_unclip_ratio: float = 1.6
    # Born-digital PDF pages: their text layer instead of OCR (docvlm/ocr/text_layer.py); gaps in font sizes
    layer_min_chars: int = 10  # fewer visible characters: no usable text layer (a scan), OCR the page
    layer_space_gap: float = 0.15  # a gap between two glyphs this wide is a space
    layer_column_gap: float = 1.0  # a gap this wide starts a new line (the next table column)

    def __post_init__(self) -> None:
        spaces = 0 < self.space_gap_weak <= self.space_gap < 1 and 0 < self.space_prob_weak <= self.space_prob < 1 \
            and self.letter_spaced > 0 and self.space_gap_letters >= 0
        if self.engine not in ENGINES:
            raise ValueError(f"ocr reader engine {self.engine!r}: one of {ENGINES}")
        layer = self.layer_min_chars >= 1 and 0 < self.layer_space_gap < self.layer_column_gap
        if not (0 < self.min_score < 1 and self.merge_gap >= 0 and spaces and self.rec_batch >= 1 and layer):
            raise ValueError(f"ocr reader settings out of range: {self}")


def default_threads() -> int:
    """ONNX Runtime threads for this process: the CPUs it may use shared by the ranks of this node.

    torchrun sets OMP_NUM_THREADS=1 for every rank; ONNX Runtime ignores it and would start one
    thread per core in every rank, so the ranks of one node would oversubscribe the CPUs.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cpus // max(1, ranks))


class TextReader:
    """Reads the text lines of a page image."""

    def __init__(self, settings: ReaderSettings | None = None, threads: int | None = None) -> None:
        self.settings = settings or ReaderSettings()
        self.threads = threads or default_threads()
        self._ocr = open_models(self.settings, self.threads)

    def read(self, image: Image.Image) -> list[TextLine]:
        """The page's text lines, top to bottom; boxes in page pixels, in the deskewed frame."""
        page, scale = self._prepare(image)
        if page is None:
            return []
        level, crops = self._line_images(page)
        readings = recognise(self._ocr, crops, self.settings.rec_batch)
        lines = []
        for box, crop, reading in zip(level, crops, readings):
            if reading.score < self.settings.min_score or not reading.text.strip():
                continue
            text = fix_confusions(unicodedata.normalize("NFKC", space_out(reading, crop, self.settings)))
            (x0, y0), (x1, y1) = box.min(axis=0) / scale, box.max(axis=0) / scale
            lines.append(TextLine(" ".join(text.split()), (float(x0), float(y0), float(x1), float(y1)), reading.score))
        return sorted(lines, key=lambda line: (line.y0, line.x0))

    def _line_images(self, page: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Detected line boxes, levelled and merged, and the line images cut from the page.

        Layout rules need level rows: boxes are turned by the page's skew (a scan is rarely
        straight), merged, then turned back to cut the line images from the page.
        """
        boxes = self._detect(page)
        if not boxes:
            return [], []
        quads = boxes
        angle, center = skew_angle(quads), np.array([page.shape[1] / 2, page.shape[0] / 2], dtype=np.float32)
        level = merge_line_boxes([rotate(q, -angle, center) for q in quads], self.settings.merge_gap)
        return level, self._ocr.crops(page, [_clockwise(rotate(q, angle, center)) for q in level])

    def _detect(self, page: np.ndarray) -> list[np.ndarray]:
        """Line boxes (4x2 corners, page pixels), found on the page scaled down to `det_max_side`:
        detection costs as much as reading a page, and 16 px text is plenty to find lines."""
        import cv2  # RapidOCR's dependency

        factor = min(1.0, self.settings.det_max_side / max(page.shape[:2]))
        small = page if factor == 1.0 else cv2.resize(
            page, (round(page.shape[1] * factor), round(page.shape[0] * factor)), interpolation=cv2.INTER_AREA)
        boxes = self._ocr.detect(small)
        return [] if boxes is None else [np.asarray(b, dtype=np.float32) / factor for b in boxes]

    def _prepare(self, image: Image.Image) -> tuple[Optional[np.ndarray], float]:
        """BGR pixels (what RapidOCR expects) at most `max_side` pixels long, and the scale applied."""
        rgb = image.convert("RGB")
        if min(rgb.size) < self.settings.min_side:
            return None, 1.0
        scale = min(1.0, self.settings.max_side / max(rgb.size))
        if scale < 1.0:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), scale


# ----------------------------------------------------------------------------- the models
@dataclass(frozen=True)
class Models:
    """What this reader uses of a RapidOCR package: the detector, the line cropper, and the recogniser's
    input preparation, ONNX session and character set (index 0 the CTC blank, the last one a space)."""

    detect: Callable[[np.ndarray], Any]  # page (BGR) -> line boxes (N x 4 x 2) or None
    crops: Callable[[np.ndarray, list[np.ndarray]], list[np.ndarray]]
    resize_norm_img: Callable[[np.ndarray, float], np.ndarray]
    session: Callable[[np.ndarray], np.ndarray]  # a batch of line images -> per-frame character probabilities
    charset: Sequence[str]


def open_models(settings: ReaderSettings, threads: int) -> Models:
    """The recognition models of `settings.engine`, each shipped inside its wheel (nothing is downloaded)."""
    if settings.engine == "rapidocr":
        return _rapidocr3(settings, threads)
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as err:  # a clear message instead of a bare ModuleNotFoundError deep in a run
        raise ImportError("the OCR engine needs `pip install rapidocr-onnxruntime`") from err
    ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1, det_limit_side_len=settings.det_limit_side,
                   det_box_thresh=settings.det_box_thresh, det_unclip_ratio=settings.det_unclip_ratio)
    rec = ocr.text_rec
    return Models(lambda page: ocr.text_det(page)[0], ocr.get_crop_img_list, rec.resize_norm_img,
                  lambda batch: rec.session(batch)[0], rec.postprocess_op.character)


def _rapidocr3(settings: ReaderSettings, threads: int) -> Models:
    """rapidocr 3.x (PP-OCRv6 small detection and recognition in its wheel)."""
    try:
        from rapidocr import RapidOCR
    except ImportError as err:
        raise ImportError("reader.engine=rapidocr needs `pip install rapidocr onnxruntime`") from err
    ocr = RapidOCR(params={"Global.use_cls": False, "Global.log_level": "warning",
                           "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                           "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                           "Det.limit_side_len": settings.det_limit_side, "Det.box_thresh": settings.det_box_thresh,
                           "Det.unclip_ratio": settings.det_unclip_ratio})
    det, rec = ocr._load_det_model(), ocr._load_rec_model()  # noqa: SLF001 - loaded now, not at the first page
    return Models(lambda page: det(page).boxes, ocr.crop_text_regions, rec.resize_norm_img, rec.session,
                  rec.postprocess_op.character)


# ----------------------------------------------------------------------------- merging split boxes
def merge_line_boxes(boxes: list[np.ndarray], max_gap: float) -> list[np.ndarray]:
    """Boxes (4x2 corner arrays) that lie on one line and overlap or nearly touch become one box."""
    boxes = sorted(boxes, key=lambda b: float(b[:, 0].min()))
    extents = [_extent(b) for b in boxes]
    i = 0
    while i < len(boxes):
        j = next((j for j in range(i + 1, len(boxes)) if _same_line_touching(extents[i], extents[j], max_gap)), None)
        if j is None:
            i += 1
            continue
        boxes[i] = _union(boxes[i], boxes.pop(j))
        extents[i] = _extent(boxes[i])
        extents.pop(j)  # look again from box i: the bigger box may now touch another
    return sorted(boxes, key=lambda b: (float(b[:, 1].min()), float(b[:, 0].min())))


def _extent(box: np.ndarray) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = box.min(axis=0), box.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _same_line_touching(a: tuple[float, ...], b: tuple[float, ...], max_gap: float) -> bool:
    height = min(a[3] - a[1], b[3] - b[1])
    shared = min(a[3], b[3]) - max(a[1], b[1])
    gap = max(a[0], b[0]) - min(a[2], b[2])
    return shared >= 0.6 * height and gap <= max_gap * height


def skew_angle(quads: list[np.ndarray], max_degrees: float = 10.0) -> float:
    """The page's skew (radians, clockwise positive in image coordinates): the median slope of the
    top edges of long boxes; 0 when fewer than 3 long boxes."""
    slopes = []
    for quad in quads:
        (x0, y0), (x1, y1) = quad[0], quad[1]
        width, height = float(np.hypot(x1 - x0, y1 - y0)), float(np.hypot(*(quad[3] - quad[0])))
        if width >= 4 * height:
            slopes.append(np.arctan2(y1 - y0, x1 - x0))
    if len(slopes) < 3:
        return 0.0
    angle = float(np.median(slopes))
    return angle if abs(angle) <= np.radians(max_degrees) else 0.0


def rotate(points: np.ndarray, angle: float, center: np.ndarray) -> np.ndarray:
    """`points` turned by `angle` radians about `center`."""
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]], dtype=np.float32)
    return ((points - center) @ matrix.T + center).astype(np.float32)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2  # RapidOCR's dependency

    rect = cv2.minAreaRect(np.concatenate([a, b]).astype(np.float32))
    return _clockwise(cv2.boxPoints(rect))


def _clockwise(points: np.ndarray) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left (what the crop step expects)."""
    by_x = points[np.argsort(points[:, 0])]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], dtype=np.float32)


# ----------------------------------------------------------------------------- recognition
@dataclass(frozen=True)
class Reading:
    """A recognised line: its text, mean character confidence, and where each character sits."""

    text: str
    score: float
    x: list[float]  # centre of each character, in crop pixels
    space_prob: list[float]  # highest "space" probability between a character and the one before


def recognise(models: Models, crops: list[np.ndarray], batch: int) -> list[Reading]:
    """Run RapidOCR's recognition model on line crops and CTC-decode them, keeping per-character
    positions and the model's space probability between characters (for `space_out`)."""
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / crops[i].shape[0])
    readings: list[Reading] = [Reading("", 0.0, [], [])] * len(crops)
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        # No minimum width (PaddleOCR pads short lines to 320 px): the model reads any width, and
        # padding costs time and, on CPU, even accuracy ("12Aug" padded, "12 Aug" not).
        widest = max([1.0] + [crops[i].shape[1] / crops[i].shape[0] for i in chunk])
        inputs = np.stack([models.resize_norm_img(crops[i], widest) for i in chunk]).astype(np.float32)
        probs = models.session(inputs)
        for i, frame_probs in zip(chunk, probs):
            readings[i] = _decode(frame_probs, models.charset, crops[i], widest)
    return readings


def _decode(probs: np.ndarray, charset: Sequence[str], crop: np.ndarray, widest: float) -> Reading:
    """Greedy CTC decoding (index 0 is the blank, the last index the space)."""
    best = probs.argmax(axis=1)
    space = len(charset) - 1
    height, width = crop.shape[:2]
    # Frame t covers input columns [8t, 8t+8); the crop fills the first 48*w/h columns of the input.
    px_per_frame = (48 * widest / len(best)) * width / min(48 * widest, np.ceil(48 * width / height))
    text, x, conf, spaces = [], [], [], []
    previous_kept = -1
    for t, index in enumerate(best):
        if index == 0 or (t > 0 and index == best[t - 1]):
            continue
        text.append(charset[index])
        x.append((t + 0.5) * px_per_frame)
        conf.append(float(probs[t, index]))
        spaces.append(float(probs[previous_kept + 1:t, space].max()) if t > previous_kept + 1 else 0.0)
        previous_kept = t
    score = float(np.mean(conf)) if conf else 0.0
    return Reading("".join(text), score, x, spaces)


# ----------------------------------------------------------------------------- word spacing
def space_out(reading: Reading, crop: np.ndarray, settings: ReaderSettings) -> str:
    """The reading with a space between two characters where the model or the pixels show a word gap.

    The recognition model (trained on text with few spaces) often drops spaces it half sees: a
    space goes back where its probability between the two characters is high, where the blank gap
    in the line image is clearly wider than a letter gap, or where both signals are moderate.
    On a letter-spaced line (thermal receipts print monospaced type, whose narrow glyphs "I", "L"
    leave gaps as wide as a proportional font's word gap: "GARDENI A B AKERI ES") a gap alone makes
    a space only if it is several times the line's usual letter gap.
    """
    text = reading.text
    if not text:
        return text
    height = crop.shape[0]
    gaps = character_gaps(reading, blank_gaps(crop, 1), height)
    letters = letter_gap(text, gaps)
    letters = letters if letters >= settings.letter_spaced else 0.0  # proportional type: the fixed gap suffices
    strong = max(settings.space_gap, settings.space_gap_letters * letters)
    out = [text[0]]
    for i in range(1, len(text)):
        if text[i] != " " and text[i - 1] != " ":
            gap, prob = gaps[i - 1], reading.space_prob[i]
            weak = prob >= settings.space_prob_weak and gap >= settings.space_gap_weak
            pixels = _pixels_count(text[i - 1], text[i]) and (gap >= strong or weak)
            if prob >= settings.space_prob or pixels:
                out.append(" ")
        out.append(text[i])
    return "".join(out)


def character_gaps(reading: Reading, gaps: list[tuple[int, int]], height: int) -> list[float]:
    """For each two neighbouring characters, the widest blank gap between their centres, in line heights."""
    return [max((b - a for a, b in gaps if left < (a + b) / 2 < right), default=0) / height
            for left, right in zip(reading.x, reading.x[1:])]


def letter_gap(text: str, gaps: list[float], min_pairs: int = 3) -> float:
    """The line's usual gap between two letters (the median; 0 with fewer than `min_pairs` pairs)."""
    between = [gap for i, gap in enumerate(gaps, 1) if text[i - 1].isalpha() and text[i].isalpha()]
    return float(np.median(between)) if len(between) >= min_pairs else 0.0


_NUMBER_CHARS = frozenset("0123456789.,:/-+%$€£*#")  # "*": masked digits ("****9571")


def _pixels_count(before: str, after: str) -> bool:
    """Whether a blank gap may stand for a space here: not inside a number (digits and number
    punctuation), where narrow glyphs ("1", ".") leave wide gaps ("$11.94", "09/11/2024")."""
    return before not in _NUMBER_CHARS or after not in _NUMBER_CHARS


_ZERO_AMONG_LETTERS = re.compile(r"(?<=[A-Za-z])0(?=[A-Za-z]|\b)|(?<=\b)0(?=[A-Za-z])")
_O_AMONG_DIGITS = re.compile(r"(?<=\d)[Oo](?=\d|\b)|(?<=\b)[Oo](?=\d)")


_TIME_AFTER_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})([0-2]?\d:[0-5]\d)(?!\d)")
_ZERO_OCT = re.compile(r"(\d{0,2})0(ct(?:ober)?)(?![a-z])", re.IGNORECASE)  # "010ct", "Monday,20ctober"
_L_AMONG_CAPITALS = re.compile(r"(?<=[A-Z])l(?=[A-Z])")  # "VlC"
_SPACED_DATE = re.compile(r"(?<![\d.,])(\d{1,2}) ?([-/.]) ?(\d{1,2}) ?\2 ?(\d{4}|\d{2})(?![\d.,])")


def fix_confusions(text: str) -> str:
    """Undo the recogniser's usual slips: a 0 with only letters around it in a word is an O
    ("NORWO0D" -> "NORWOOD"), and so is the 0 of "0ct" (October, glued to its day: "010ct" ->
    "01 Oct"); an O with only digits around it is a 0 ("O44"); an l between capitals is an I ("VlC");
    a stray space inside a date goes ("27-02 -2023"); a time glued to the year of a date is split off
    ("27-05-202420:35", "19 Jun 202409:04")."""
    text = _SPACED_DATE.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{m[2]}{m[4]}", text)
    text = _ZERO_OCT.sub(lambda m: f"{m[1]} O{m[2]}" if m[1] else f"O{m[2]}", text)
    text = _L_AMONG_CAPITALS.sub("I", text)
    text = _TIME_AFTER_YEAR.sub(r"\1 \2", text)
    def letter_o(match: re.Match[str]) -> str:
        at_start = match.start() == 0 or not text[match.start() - 1].isalnum()
        return "o" if not at_start and _lower_word(text, match.start()) else "O"

    text = _ZERO_AMONG_LETTERS.sub(letter_o, text)
    return _O_AMONG_DIGITS.sub("0", text)


def _lower_word(text: str, index: int) -> bool:
    start = index
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    end = index
    while end < len(text) and text[end].isalnum():
        end += 1
    letters = [c for c in text[start:end] if c.isalpha()]
    return bool(letters) and sum(c.islower() for c in letters) > len(letters) / 2


def blank_gaps(crop: np.ndarray, min_width: float) -> list[tuple[int, int]]:
    """Runs of ink-free columns at least `min_width` wide, inside the text (not at its ends)."""
    gray = crop.astype(np.float32).mean(axis=2)
    background = float(np.median(gray))
    distance = np.abs(gray - background)
    contrast = float(distance.max())
    if contrast < 40:  # no text on this crop worth measuring
        return []
    ink = (distance > contrast / 2).sum(axis=0)
    blank = ink == 0
    inked = np.flatnonzero(~blank)
    gaps: list[tuple[int, int]] = []
    start = None
    for x in range(int(inked[0]), int(inked[-1]) + 1):
        if blank[x] and start is None:
            start = x
        elif not blank[x] and start is not None:
            if x - start >= min_width:
                gaps.append((start, x))
            start = None
    return gaps
