"""Strict JSON reading: duplicate keys and pathological nesting are errors with a location.

Python's ``json`` keeps the last of two equal keys without a word (a node id written twice
silently loses one node) and ends deep nesting with a ``RecursionError``. ``parse_json``
reports both, like a syntax error, as ``UserInputError`` (exit 2) naming line and column.
The fast C parser does the work; only a failing document is scanned again to find the spot.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from typing import Any

from vdnodes.core.errors import UserInputError

MAX_DEPTH = 200  # graph files nest 5 levels; anything near this is not a graph


class _DuplicateKey(ValueError):
    def __init__(self, key: str, pos: int | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.pos = pos


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {col}"


def _duplicate_position(text: str) -> int | None:
    """Offset of the first duplicated key, found with the pure-Python scanner (slow; errors only)."""
    decoder = json.JSONDecoder()

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        s, end = s_and_end
        pairs, new_end = json.decoder.JSONObject(s_and_end, strict, scan_once, None, lambda p: p, memo)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                first = s.find(json.dumps(key), end - 1)
                raise _DuplicateKey(key, s.find(json.dumps(key), first + 1) if first >= 0 else None)
            seen.add(key)
        return dict(pairs), new_end

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    try:
        decoder.decode(text)
    except _DuplicateKey as e:
        return e.pos
    except (ValueError, RecursionError):
        return None
    return None


_STRUCTURE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)  # an escape pair, a quote or a bracket


def _too_deep_position(text: str, limit: int) -> int | None:
    """Offset where nesting first passes ``limit`` (brackets inside strings skipped), or None."""
    depth, in_string = 0, False
    for m in _STRUCTURE.finditer(text):
        ch = m.group()
        if ch == '"':
            in_string = not in_string
        elif in_string or len(ch) == 2:
            continue
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return m.start()
        else:
            depth -= 1
    return None


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` that refuses duplicate keys and nesting deeper than ``MAX_DEPTH``."""
    deep = _too_deep_position(text, MAX_DEPTH) if text.count("[") + text.count("{") > MAX_DEPTH else None
    if deep is not None:
        raise UserInputError(f"{source} is nested more than {MAX_DEPTH} levels deep at {_where(text, deep)}; "
                             "a vdnodes file never is")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{source} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except _DuplicateKey as e:
        pos = _duplicate_position(text)
        where = f" at {_where(text, pos)}" if pos is not None and pos >= 0 else ""
        raise UserInputError(f"{source} has the key {e.key!r} twice in one object{where}; JSON keeps only "
                             "the last, so one of them would be lost: rename or remove one") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise UserInputError(f"{source} is nested too deeply to read") from None
