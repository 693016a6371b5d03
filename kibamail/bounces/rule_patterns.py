"""A taxonomy regex compiled for speed without changing what it matches.

A rule's ``text`` and ``hosts`` patterns mean: the regex, case-insensitive
(``re.IGNORECASE``), searched in the raw text. Two speed-ups keep exactly that meaning:

1. A substring prefilter. :func:`fold` maps each character the way ``IGNORECASE``
   compares them (``_sre``'s simple lower case, then one representative of the extra
   equivalences such as i and dotless i, s and long s), and ``literals`` are strings one of
   which the folded text of every match contains. A pattern whose literals are all absent
   from the folded text cannot match and is not run.
2. Lower-cased matching. Python's ``re`` is several times slower with ``IGNORECASE``.
   For ASCII text, ``lowered`` (the pattern with its letters lower-cased, compiled
   case-sensitively) searched in ``text.lower()`` finds a match exactly when the original
   does, provided the pattern passes :func:`_lowering_is_exact`; otherwise, and for any
   non-ASCII text, the ``IGNORECASE`` original runs on the raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _casefix  # type: ignore[attr-defined,unused-ignore]
from re import _compiler as sre_compile  # type: ignore[attr-defined,unused-ignore]
from re import _constants as sre_constants  # type: ignore[attr-defined,unused-ignore]
from re import _parser as sre_parse  # type: ignore[attr-defined,unused-ignore]
from typing import Any, cast

__all__ = ["Pattern", "compile_pattern", "fold"]

_EXTRA_CASES: dict[int, tuple[int, ...]] = _casefix._EXTRA_CASES
_tolower = sre_compile._sre.unicode_tolower


class _FoldTable(dict[int, str]):
    """``str.translate`` table filled on first use: code point -> folded character."""

    def __missing__(self, code: int) -> str:
        lower = _tolower(code)
        folded = chr(min((lower, *_EXTRA_CASES.get(lower, ()))))
        self[code] = folded
        return folded


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """``text`` with characters that ``IGNORECASE`` treats as equal made equal.

    Same length as ``text``; for ASCII text it is ``text.lower()``.
    """
    return text.lower() if text.isascii() else text.translate(_FOLD)


def lowered(pattern: str) -> str:
    """``pattern`` for lower-cased input: letters folded, escapes (``\\S``) kept."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i].lower())
            i += 1
    return "".join(out)


# Escapes that name no letter (``\x41`` would be an "A" the lowering cannot see).
_SAFE_ESCAPES = frozenset("sSdDwWbBAZntrfv")
_INLINE_FLAGS = re.compile(r"\(\?[a-zA-Z-]")


def _escapes_ok(pattern: str) -> bool:
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            following = pattern[i + 1 : i + 2]
            if following.isalnum() and following not in _SAFE_ESCAPES:
                return False
            i += 2
        else:
            i += 1
    return True


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)


def _range_ok(low: int, high: int) -> bool:
    """A class range whose lower-cased form means the same on lower-cased ASCII text."""
    letters = {c for c in range(low, high + 1) if chr(c).isascii() and chr(c).isalpha()}
    upper = ord("A") <= low and high <= ord("Z")
    return not letters or upper or (ord("a") <= low and high <= ord("z"))


def _tree_ok(items: Any) -> bool:
    """No backreference and no letter-spanning class range anywhere in the parsed pattern."""
    for op, arg in items:
        if op is sre_constants.IN:
            if any(i_op is sre_constants.RANGE and not _range_ok(*i_arg) for i_op, i_arg in arg):
                return False
        elif op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            return False
        elif op is sre_constants.BRANCH:
            if not all(_tree_ok(branch) for branch in arg[1]):
                return False
        elif op is sre_constants.SUBPATTERN or op in _REPEATS:
            if not _tree_ok(arg[-1]):  # (group, flags, flags, p) / (min, max, p)
                return False
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            if not _tree_ok(arg[1]):  # (direction, p)
                return False
        elif op is sre_constants.ATOMIC_GROUP and not _tree_ok(arg):
            return False
    return True


def _lowering_is_exact(pattern: str) -> bool:
    """Whether ``lowered(pattern)`` on ``text.lower()`` matches exactly when ``pattern``
    with ``IGNORECASE`` matches ``text``, for every ASCII ``text``.

    Lower-casing the letters of an ASCII pattern commutes with ASCII case-insensitive
    matching as long as every letter is visible as a letter (no ``\\x41``-style escapes),
    case-sensitivity is never switched back on (no inline flags), no backreference
    compares case-folded groups, and no class range spans letters and non-letters (the
    lowered ``[0-Z]`` would be ``[0-z]``).
    """
    if not pattern.isascii() or _INLINE_FLAGS.search(pattern) or not _escapes_ok(pattern):
        return False
    return _tree_ok(list(sre_parse.parse(pattern)))


def _requirement(items: list[tuple[object, object]]) -> list[str] | None:
    """Literals one of which every match of this sequence contains (None: unknown)."""
    options: list[list[str]] = []
    run = ""
    for op, arg in items:
        if op is sre_constants.LITERAL:
            run += chr(cast(int, arg))
            continue
        if len(run) >= 3:
            options.append([run])
        run = ""
        inner = None
        if op is sre_constants.SUBPATTERN:
            inner = _alternatives(list(arg[3]))  # type: ignore[index]
        elif op is sre_constants.BRANCH:  # a (?:a|b) group, inlined by the parser
            inner = _alternatives([(op, arg)])
        if inner is not None:
            options.append(inner)
    if len(run) >= 3:
        options.append([run])
    if not options:
        return None
    return max(options, key=lambda o: (min(len(x) for x in o), -len(o)))


def _alternatives(items: list[tuple[object, object]]) -> list[str] | None:
    if len(items) == 1 and items[0][0] is sre_constants.BRANCH:
        found: list[str] = []
        for alternative in items[0][1][1]:  # type: ignore[index]
            requirement = _requirement(list(alternative))
            if requirement is None:
                return None
            found.extend(requirement)
        return found
    return _requirement(items)


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Folded literals one of which the folded text of any match contains (None: none known).

    A scoped ``(?-i:...)`` only narrows what matches, so its literals stay required.
    """
    found = _alternatives(list(sre_parse.parse(pattern)))
    if found is None:
        return None
    return tuple(dict.fromkeys(fold(literal) for literal in found))


@dataclass(frozen=True, slots=True, eq=False)
class Pattern:
    """One taxonomy regex: the exact matcher and its faster, equivalent forms."""

    source: str
    exact: re.Pattern[str]  # IGNORECASE, on the raw text: the documented meaning
    lowered: re.Pattern[str] | None  # on text.lower() of ASCII text, when exact
    literals: tuple[str, ...] | None  # prefilter on fold(text)

    def search(self, raw: str, low: str | None) -> bool:
        """Whether the pattern matches ``raw``; ``low`` is ``raw.lower()`` for ASCII
        text, else None."""
        if low is not None and self.lowered is not None:
            return self.lowered.search(low) is not None
        return self.exact.search(raw) is not None


def compile_pattern(source: str) -> Pattern:
    return Pattern(
        source=source,
        exact=re.compile(source, re.IGNORECASE),
        lowered=re.compile(lowered(source)) if _lowering_is_exact(source) else None,
        literals=required_literals(source),
    )
