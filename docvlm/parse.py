"""Reading model answers: think blocks, markdown, `FIELD: value` lines, JSON (even truncated), loops.

Everything here is about the SHAPE of a model's text; what the values mean is normalize.py's job,
and which names and words count is the schema's (conf/schema/*.yaml).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from docvlm.schema import DocTypeSpec, Schema

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BULLET = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*•·+]\s+|\d{1,3}[.)]\s+|\(\d{1,3}\)\s+)")
_KEY_VALUE = re.compile(r"""^["']?(?P<key>[A-Za-z][\w &/().#'-]{0,48}?)["']?\s*[:=]\s*(?P<value>.*)$""")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")
_LOOP_MIN_REPEATS = 3  # a block of lines seen this many times in a row at the end is a loop
_LOOP_MAX_BLOCK = 20  # longest repeated block (in lines) looked for
_FILLER_RUN = re.compile(r"(.{1,16}?)\1{19,}", re.DOTALL)  # one short unit ("NOT_FOUND | ") 20+ times
_FILLER_KEEP = 200  # a filler run this long is a loop even when text follows it


# ----------------------------------------------------------------------------- text cleanup
def strip_thinking(text: str) -> str:
    """The answer without reasoning: closed <think> blocks removed; text before a lone </think>
    dropped (the template opened the block); an unclosed <think> drops everything after it."""
    text = _THINK_BLOCK.sub("", text)
    lowered = text.lower()
    if "</think>" in lowered:
        text = text[lowered.rindex("</think>") + len("</think>"):]
    elif "<think>" in lowered:
        text = text[: lowered.index("<think>")]
    return text


def clean_line(line: str) -> str:
    """A line without list markers, heading marks, bold/italic/code marks and outer whitespace."""
    line = line.replace("**", "").replace("__", "").replace("`", "").strip()
    for _ in range(2):  # "1. - item"
        line = _BULLET.sub("", line).strip()
    return line.strip("*").strip()


def answer_lines(text: str) -> list[str]:
    """Cleaned lines of an answer: think blocks and code fences gone, markup stripped."""
    lines = []
    for raw in strip_thinking(text).splitlines():
        if raw.strip().startswith("```"):
            lines.append("")  # a fence separates blocks like a blank line
            continue
        lines.append(clean_line(raw))
    return lines


def split_key_value(line: str) -> Optional[tuple[str, str]]:
    """("KEY", "value") for a `KEY: value` line (also `"KEY": "value",` and `KEY = value`)."""
    match = _KEY_VALUE.match(line)
    if not match:
        return None
    value = match["value"].strip()
    if value.endswith(","):
        value = value[:-1].rstrip()
    return match["key"].strip(), _unquote(value)


def table_cells(line: str) -> Optional[list[str]]:
    """Cells of a markdown table row ("| a | b |"), or None if the line is not one."""
    if not line.startswith("|") or line.count("|") < 3:
        return None
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def is_table_rule(line: str) -> bool:
    return bool(_TABLE_RULE.match(line.strip())) and "-" in line


# ----------------------------------------------------------------------------- field names
def canonical_key(raw: str) -> str:
    """"Line item description(s)" -> "LINE_ITEM_DESCRIPTIONS"-style key."""
    raw = re.sub(r"\(s\)", "S", raw, flags=re.IGNORECASE)
    return re.sub(r"[^A-Z0-9]+", "_", raw.upper()).strip("_")


def _stem_word(word: str) -> str:
    if word.endswith("SSES"):
        return word[:-2]
    if word.endswith("SS") or len(word) <= 3:
        return word
    if word.endswith("IES"):
        return word[:-3] + "Y"
    return word[:-1] if word.endswith("S") else word


def stem_key(key: str) -> str:
    """Singular form of every word, so DESCRIPTION/DESCRIPTIONS and AMOUNT(S)_PAID match."""
    return "_".join(_stem_word(word) for word in key.split("_"))


def resolve_field(raw: str, doc_type: DocTypeSpec, schema: Schema, prefer_list: bool = False) -> Optional[str]:
    """The doc type's field a model's key means (exact, singular/plural, schema alias), else None."""
    key = canonical_key(raw)
    names = doc_type.field_names
    if key in names:
        return key
    stem = stem_key(key)
    for name in names:
        if stem_key(name) == stem:
            return name
    for alias, targets in schema.field_aliases.items():
        if alias == key or stem_key(alias) == stem:
            candidates = [t for t in targets if t in names]
            lists = [t for t in candidates if schema.fields[t].is_list]
            if prefer_list and lists:
                return lists[0]
            if candidates:
                return candidates[0]
    return None


# ----------------------------------------------------------------------------- field answers
@dataclass
class _Collector:
    """Gathers raw values by field while reading an answer top to bottom.

    A list key may come once per item ("LINE_ITEM_DESCRIPTION: Widget" per line item): its values
    are appended. A scalar key coming again means the answer repeats (or revises) itself; from
    then on only missing values are filled, so a repeated block cannot double the lists.
    """

    doc_type: DocTypeSpec
    schema: Schema
    values: dict[str, list[str]] = field(default_factory=dict)
    second_block: bool = False
    scalars_added: int = 0  # a list key seen again after a scalar key is a repeated block too
    _scalars_at: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        is_list = self.schema.fields[name].is_list
        if name in self.values and is_list and self._scalars_at[name] != self.scalars_added:
            self.second_block = True
        if name not in self.values:
            self.values[name] = [value]
        elif self._is_missing(self.values[name]):
            self.values[name] = [value]  # a later found value beats an earlier NOT_FOUND
        elif is_list and not self.second_block:
            self.values[name].append(value)
        elif not is_list:
            self.second_block = True
        self.scalars_added += 0 if is_list else 1
        self._scalars_at[name] = self.scalars_added

    def _is_missing(self, values: list[str]) -> bool:
        return all(v.strip().lower() in self.schema.not_found_aliases for v in values)

    def result(self) -> dict[str, str]:
        sep = self.schema.list_separator
        return {name: sep.join(parts) if self.schema.fields[name].is_list else parts[0]
                for name, parts in self.values.items()}


def parse_field_answer(text: str, doc_type: DocTypeSpec, schema: Schema) -> dict[str, str]:
    """Raw values by field name from a `FIELD: value` or JSON answer (not normalised).

    Keys the type does not have are dropped; repeated list keys add items; a repeated block of
    the whole answer is ignored; values may continue on the following lines.
    """
    text, _ = cut_repetition(strip_thinking(text))
    from_json = _fields_from_json(text, doc_type, schema)
    if from_json:
        return from_json
    return _fields_from_lines(text, doc_type, schema)


def _fields_from_lines(text: str, doc_type: DocTypeSpec, schema: Schema) -> dict[str, str]:
    found = _Collector(doc_type, schema)
    pending: Optional[str] = None  # field whose value comes on the following lines
    following: list[str] = []
    table: list[Optional[str]] = []  # fields of the current markdown table's columns
    for line in answer_lines(text) + [""]:
        rule = is_table_rule(line)
        cells = None if rule else table_cells(line)
        pair = None if rule or cells is not None else split_key_value(line)
        name = resolve_field(pair[0], doc_type, schema) if pair else None
        ends_value = rule or cells is not None or name or (pair and canonical_key(pair[0]) == pair[0])
        if pending and (ends_value or (not line and following)):
            _flush(found, pending, following)  # a new key, a table or a blank line ends it
            pending = None
        if rule or cells is not None:
            table = _table_line(found, cells, table, doc_type, schema)
            continue
        table = []
        if name and pair[1]:
            found.add(name, pair[1])
        elif name:
            pending = name  # the value follows on the next lines
        elif pending and line:
            following.append(_unquote(line))
        # anything else is commentary or an unknown key (an unknown FIELD_NAME ends a value): dropped
    return found.result()


def _flush(found: _Collector, pending: str, following: list[str]) -> None:
    """Store the value written on the lines after `pending:` (list items or wrapped text)."""
    items = [item.strip("[]\", ") for item in following if item.strip("[]\", ")]
    joiner = found.schema.list_separator if found.schema.fields[pending].is_list else ", "
    found.add(pending, joiner.join(items) if items else found.schema.not_found)
    following.clear()


def _table_line(found: _Collector, cells: Optional[list[str]], table: list[Optional[str]],
                doc_type: DocTypeSpec, schema: Schema) -> list[Optional[str]]:
    """One markdown-table line: a header row names columns, a 2-cell row is FIELD | value."""
    if cells is None:  # the |---|---| rule
        return table
    if not table:
        columns = [resolve_field(c, doc_type, schema, prefer_list=True) for c in cells]
        if sum(c is not None for c in columns) >= 2 and len(cells) > 2:
            return columns
        name = resolve_field(cells[0], doc_type, schema) if len(cells) == 2 else None
        if name:
            found.add(name, cells[1])
        return []
    for name, cell in zip(table, cells):
        if name:
            found.add(name, cell or schema.not_found)
    return table


# ----------------------------------------------------------------------------- JSON answers
def parse_json(text: str) -> Any:
    """The first JSON object (or array) in `text`, repairing a truncated end; None if there is none.

    Truncation is cut back to the last complete value, so a half-written value is dropped rather
    than kept in part.
    """
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    body = re.sub(r",\s*([}\]])", r"\1", text[start:])  # trailing commas
    try:
        return json.JSONDecoder().raw_decode(body)[0]
    except json.JSONDecodeError:
        return _repair_truncated(body)


def _repair_truncated(body: str) -> Any:
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (cut position, closers needed there)
    in_string = escaped = False
    for i, char in enumerate(body):
        if in_string:
            escaped = char == "\\" and not escaped
            in_string = escaped or char != '"'
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
            cuts.append((i + 1, "".join(reversed(stack))))
        elif char in "}]" and stack:
            stack.pop()
        elif char == ",":
            cuts.append((i, "".join(reversed(stack))))
    attempts = [] if in_string else [(len(body), "".join(reversed(stack)))]
    for end, closers in attempts + cuts[::-1][:200]:
        try:
            return json.loads(body[:end] + closers)
        except json.JSONDecodeError:
            continue
    return None


def _fields_from_json(text: str, doc_type: DocTypeSpec, schema: Schema) -> dict[str, str]:
    data = parse_json(text)
    found = _Collector(doc_type, schema)
    if isinstance(data, dict):
        _collect_object(data, found, doc_type, schema)
    elif isinstance(data, list) and all(isinstance(row, dict) for row in data):
        _collect_rows(data, found, doc_type, schema)
    return found.result()


def _collect_object(data: dict[str, Any], found: _Collector, doc_type: DocTypeSpec, schema: Schema) -> None:
    for key, value in data.items():
        name = resolve_field(str(key), doc_type, schema)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            _collect_rows(value, found, doc_type, schema)  # "line_items": [{...}, ...]
        elif isinstance(value, dict) and not name:
            _collect_object(value, found, doc_type, schema)  # {"invoice": {...}}
        elif name:
            found.add(name, _json_text(value, schema))


def _collect_rows(rows: list[dict[str, Any]], found: _Collector, doc_type: DocTypeSpec, schema: Schema) -> None:
    """A list of item objects -> one list field per key, NOT_FOUND where an item lacks the key."""
    columns: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        for key, value in row.items():
            name = resolve_field(str(key), doc_type, schema, prefer_list=True)
            if name and schema.fields[name].is_list:
                column = columns.setdefault(name, [schema.not_found] * len(rows))
                column[index] = _json_text(value, schema)
    for name, column in columns.items():
        found.add(name, schema.list_separator.join(column))


def _json_text(value: Any, schema: Schema) -> str:
    if value is None:
        return schema.not_found
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return schema.list_separator.join(_json_text(v, schema) for v in value) or schema.not_found
    return str(value)


def _unquote(value: str) -> str:
    """A list written as ["a", "b"], ['a', 'b'] or [a, b] as " | " items; else the value unquoted."""
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        items = _bracket_items(value)
        return " | ".join("NOT_FOUND" if v is None else str(v).strip() for v in items)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _bracket_items(value: str) -> list[Any]:
    for read in (json.loads, ast.literal_eval):
        try:
            items = read(value)
            if isinstance(items, list):
                return items
        except (ValueError, SyntaxError):
            continue
    # [Widget, Gadget]: a comma and a space separate items ("$1,020.22" keeps its comma)
    return [item.strip("\"' ") for item in re.split(r",\s+", value[1:-1])]


# ----------------------------------------------------------------------------- repetition loops
def cut_repetition(text: str) -> tuple[str, dict[str, Any] | None]:
    """Text with a repetition loop cut off, and what was cut (None if nothing).

    Two shapes: filler (one short unit repeated, "....." or "| | | ") running to the end of the
    answer or for very long; and a block of lines repeated at the end (kept once).
    """
    for match in _FILLER_RUN.finditer(text):
        if not match.group(1).strip(" \t"):
            continue  # runs of spaces are layout, not a loop
        reaches_end = not text[match.end():].strip()
        if reaches_end or len(match.group()) >= _FILLER_KEEP:
            return text[: match.start()].rstrip(), {"kind": "filler", "unit": match.group(1), "cut_chars": len(text) - match.start()}
    lines = text.rstrip().split("\n")
    cut = _repeated_tail(lines)
    if cut is None:
        return text, None
    kept, block = cut
    return "\n".join(lines[:kept]), {"kind": "lines", "block_lines": block, "cut_lines": len(lines) - kept}


def _repeated_tail(lines: list[str]) -> Optional[tuple[int, int]]:
    """(lines to keep, block size) when the text ends with a block of lines repeated in a row."""
    keys = [line.strip() for line in lines]
    if len(keys) > 1 and keys[-1] != keys[-2] and any(k.startswith(keys[-1]) and k != keys[-1] for k in keys[-_LOOP_MAX_BLOCK - 1:-1]):
        keys = keys[:-1]  # the last line was cut off mid-repeat
    n = len(keys)
    for block in range(1, _LOOP_MAX_BLOCK + 1):
        repeats = 1
        while n - (repeats + 1) * block >= 0 and keys[n - (repeats + 1) * block: n - repeats * block] == keys[n - block:]:
            repeats += 1
        if repeats >= _LOOP_MIN_REPEATS and any(keys[n - block:]):
            return n - (repeats - 1) * block, block
    return None
