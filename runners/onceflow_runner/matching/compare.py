"""Comparison kinds: how two values of one field agree, as one of a few graded levels.

Fellegi-Sunter scores a pair by the level each field's comparison lands on, so a comparison is
two pure functions: `prepare` (a raw value -> a normalised form, None when missing, run once per
value) and `level` (two prepared values -> the index of the first level they reach, most similar
first; the last level is always "different"). Missing is not a level: a missing side weighs 0.

The comparators are rapidfuzz's (Jaro-Winkler, Levenshtein, token ratios; C code), with
normalisation written here for what business records get wrong: legal forms and stop words in
company names, street abbreviations, nicknames and swapped first/last names, day/month
transposed dates, phone formats and country codes, e-mail case. `prepare` is memoised for
strings, because a search returns the same candidates to many records.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler, Levenshtein

from onceflow_runner.matching.nicknames import name_groups

__all__ = ["COMPARISONS", "MAX_VALUE_CHARS", "Comparison", "ComparisonKind", "clear_caches", "comparison"]

ComparisonKind = str

#: Characters of a value that are compared; the rest is ignored. Why: Jaro-Winkler and token ratios
#: cost time in proportion to the product of the lengths, so one 1 MB name from a careless or hostile
#: source took 5-41 s per candidate and stalled the runner; no business field is this long, and
#: the memo would otherwise keep megabyte strings as keys.
MAX_VALUE_CHARS = 256

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_DIGITS = re.compile(r"\D+")
#: "Hauptstraße", "Hauptstr." and "Haupt Str" are one street.
_STRASSE = re.compile(r"(?<=[a-z])\s?(strasse|str)\b")

#: Legal forms, written as their normalised tokens (dots and spaces removed by `_plain`), dropped
#: from company names: "Acme GmbH" and "ACME Gesellschaft mbH" are the same company.
LEGAL_FORMS: frozenset[str] = frozenset(
    [
        "gmbh",
        "mbh",
        "aktiengesellschaft",
        "kommanditgesellschaft",
        "u",  # GmbH u. Co. KG
        "eu",
        "vof",
        "gesellschaft",
        "ag",
        "kg",
        "ohg",
        "gbr",
        "ug",
        "haftungsbeschrankt",
        "ek",
        "ev",
        "co",
        "kgaa",
        "se",
        "inc",
        "incorporated",
        "llc",
        "llp",
        "lp",
        "ltd",
        "limited",
        "plc",
        "corp",
        "corporation",
        "company",
        "sa",
        "sas",
        "sarl",
        "srl",
        "spa",
        "bv",
        "nv",
        "oy",
        "ab",
        "as",
        "aps",
        "sl",
        "sro",
        "kft",
        "zoo",
        "sp",
        "pty",
        "pvt",
        "pte",
    ]
)
STOP_WORDS: frozenset[str] = frozenset(
    ["the", "and", "und", "und", "of", "der", "die", "das", "de", "la", "le", "et", "y", "&", "von", "van"]
)
#: Abbreviations written out, so "Intl. Mfg" and "International Manufacturing" compare equal.
ABBREVIATIONS: dict[str, str] = {
    "intl": "international",
    "int": "international",
    "mfg": "manufacturing",
    "mfr": "manufacturing",
    "svc": "services",
    "svcs": "services",
    "serv": "services",
    "bros": "brothers",
    "tech": "technologies",
    "techn": "technologies",
    "sys": "systems",
    "dist": "distribution",
    "distr": "distribution",
    "grp": "group",
    "hldgs": "holdings",
    "assoc": "associates",
    "mgmt": "management",
    "eng": "engineering",
    "ind": "industries",
    "inds": "industries",
    "natl": "national",
    "dt": "deutsche",
    "dtsch": "deutsche",
}
STREET_WORDS: dict[str, str] = {
    "str": "strasse",
    "st": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "blvd": "boulevard",
    "ln": "lane",
    "dr": "drive",
    "pl": "platz",
    "hwy": "highway",
    "sq": "square",
    "ct": "court",
    "weg": "weg",
}


def _text(value: Any) -> str:
    """The value as text, cut at MAX_VALUE_CHARS (a list or mapping where a scalar belongs: its repr)."""
    return (value if type(value) is str else str(value))[:MAX_VALUE_CHARS]


def _cut(value: Any) -> Any:
    """Strings (also in a tuple, a person's name) cut at MAX_VALUE_CHARS, before the memo keeps them."""
    if type(value) is str:
        return value[:MAX_VALUE_CHARS]
    if type(value) is tuple:
        return tuple(v[:MAX_VALUE_CHARS] if type(v) is str else v for v in value)
    return value


def _plain(value: Any) -> str:
    """Case-folded, accents removed (ß -> ss, ü -> u), every run of other characters one space."""
    text = _text(value).casefold()
    if not text.isascii():  # most values are ASCII: skip the decomposition (the costliest step) for them
        text = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
        text = "".join(c for c in text if not unicodedata.combining(c))
    return _NON_ALNUM.sub(" ", text).strip()


#: What people key when a value is unknown. Why missing: two records with "n/a" for an e-mail are
#: no more alike than two without one, but compared as values they agreed exactly (strong evidence).
#: Not "na": it is Namibia's country code.
PLACEHOLDERS: frozenset[str] = frozenset(
    ["-", "--", "---", "?", "n/a", "n.a.", "k.a.", "none", "null", "nil", "unknown", "keine", "tbd", "xxx"]
)


def _missing(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip()
        return not text or (len(text) <= 7 and text.casefold() in PLACEHOLDERS)
    return value is None


@dataclass(frozen=True)
class Comparison:
    """One comparison kind: its levels (most similar first, "different" last) and its two functions."""

    kind: ComparisonKind
    levels: tuple[str, ...]
    prepare: Callable[[Any], Any]
    level: Callable[[Any, Any], int]
    #: How many fields the comparison reads (personName reads first and last name).
    arity: int = 1

    @property
    def prepare_str(self) -> Callable[[str], Any]:
        """`prepare` for a string of at most MAX_VALUE_CHARS, without the guards (the scorer's hot loop)."""
        return getattr(self.prepare, "cached", self.prepare)


_CACHES: list[Any] = []


def clear_caches() -> None:
    """Forget every memoised prepared value (benchmarks measure the cost of values never seen)."""
    for cache in _CACHES:
        cache.cache_clear()


def _memo(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`fn` memoised for hashable values (strings, tuples of strings); None for missing values."""

    def checked(value: Any) -> Any:
        return None if _missing(value) else fn(value)

    cached = lru_cache(maxsize=65536)(checked)
    _CACHES.append(cached)

    def prepare(value: Any) -> Any:
        value = _cut(value)
        try:
            return cached(value)
        except TypeError:  # unhashable: a list or a mapping where a scalar was expected
            return checked(value)

    # The hot loop calls it straight for strings no longer than MAX_VALUE_CHARS.
    prepare.cached = cached  # type: ignore[attr-defined]
    return prepare


# ---- exact -----------------------------------------------------------------------------------


def _prepare_exact(value: Any) -> str | None:
    return _plain(value) or None


def _level_exact(a: str, b: str) -> int:
    return 0 if a == b else 1


# ---- identifier (tax id, VAT, GLN, SKU) ------------------------------------------------------


def _prepare_identifier(value: Any) -> str | None:
    return _plain(value).replace(" ", "") or None


def _level_identifier(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if Levenshtein.distance(a, b, score_cutoff=1) <= 1 else 2


# ---- text ------------------------------------------------------------------------------------


def _prepare_text(value: Any) -> str | None:
    return _plain(value) or None


def _level_text(a: str, b: str) -> int:
    if a == b:
        return 0
    similarity = JaroWinkler.normalized_similarity(a, b)
    if similarity >= 0.92:
        return 1
    return 2 if similarity >= 0.80 else 3


# ---- company ---------------------------------------------------------------------------------


def _initialisms(tokens: list[str]) -> list[str]:
    """Runs of single letters joined: "g m b h" (from G.m.b.H.) -> "gmbh", "s a" -> "sa"."""
    out: list[str] = []
    run = ""
    for token in tokens:
        if len(token) == 1 and token.isalpha():
            run += token
            continue
        if run:
            out.append(run)
            run = ""
        out.append(token)
    if run:
        out.append(run)
    return out


def _prepare_company(value: Any) -> str | None:
    # "S.A.", "B.V.", "s.à r.l." arrive as runs of single letters: joined, they are legal forms too.
    tokens = [ABBREVIATIONS.get(t, t) for t in _initialisms(_plain(value).split())]
    kept = [t for t in tokens if t not in LEGAL_FORMS and t not in STOP_WORDS]
    # A name of nothing but legal forms and stop words ("GmbH", "The Company") names no one: two such
    # names agreeing is no evidence, so the name is missing.
    return " ".join(kept) or None


def _level_company(a: str, b: str) -> int:
    if a == b:
        return 0
    if fuzz.token_sort_ratio(a, b) >= 90:
        return 1
    if fuzz.token_set_ratio(a, b) >= 90:
        return 2
    return 3 if fuzz.token_sort_ratio(a, b) >= 75 else 4


# ---- street address --------------------------------------------------------------------------


def _prepare_address(value: Any) -> str | None:
    text = _STRASSE.sub(" strasse", _plain(value))
    return " ".join(STREET_WORDS.get(t, t) for t in text.split()) or None


def _level_address(a: str, b: str) -> int:
    if a == b:
        return 0
    if fuzz.token_sort_ratio(a, b) >= 90:
        return 1
    return 2 if JaroWinkler.normalized_similarity(a, b) >= 0.85 else 3


# ---- postcode --------------------------------------------------------------------------------


def _prepare_postcode(value: Any) -> str | None:
    return _plain(value).replace(" ", "") or None


def _level_postcode(a: str, b: str) -> int:
    if a == b:
        return 0
    prefix = max(2, min(len(a), len(b)) - 2)
    return 1 if a[:prefix] == b[:prefix] else 2


# ---- e-mail ----------------------------------------------------------------------------------


#: Mailboxes of a role, not a person: "info@" at two companies says nothing (a cheap term-frequency
#: adjustment: the most common values of the local part get no "same mailbox" level).
ROLE_MAILBOXES: frozenset[str] = frozenset(
    [
        "info",
        "office",
        "mail",
        "contact",
        "kontakt",
        "sales",
        "vertrieb",
        "einkauf",
        "purchasing",
        "buchhaltung",
        "accounts",
        "accounting",
        "invoice",
        "invoices",
        "rechnung",
        "rechnungen",
        "admin",
        "service",
        "support",
        "hello",
        "team",
        "orders",
        "bestellung",
        "post",
    ]
)


def _prepare_email(value: Any) -> tuple[str, str] | None:
    text = _text(value).strip().casefold()
    if text.startswith("mailto:"):
        text = text[7:]
    local, _, domain = text.rpartition("@")
    if not local or not domain:  # no address ("-", "ann", "ann@"): agreeing on it is no evidence
        return None
    return local.split("+", 1)[0], domain


def _level_email(a: tuple[str, str], b: tuple[str, str]) -> int:
    if a == b:
        return 0
    if a[0] == b[0] and a[0] not in ROLE_MAILBOXES:
        return 1
    return 2 if a[1] == b[1] and JaroWinkler.normalized_similarity(a[0], b[0]) >= 0.88 else 3


# ---- phone -----------------------------------------------------------------------------------


def _prepare_phone(value: Any) -> str | None:
    digits = _DIGITS.sub("", _text(value))
    # The subscriber part: country code and trunk prefix are written in many ways (+49, 0049, 0).
    subscriber = digits[-9:]
    # Fewer than six digits is no number; one digit repeated (000000, 999 999 999) is a placeholder.
    return subscriber if len(subscriber) >= 6 and subscriber.strip(subscriber[0]) else None


def _level_phone(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if Levenshtein.distance(a, b, score_cutoff=1) <= 1 else 2


# ---- date ------------------------------------------------------------------------------------


def _prepare_date(value: Any) -> tuple[int, int, int] | None:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.year, value.month, value.day
    text = _text(value).strip()[:10]
    parts = re.split(r"[-./]", text)
    # isdigit() alone admits "²" and "①", which int() refuses: only ASCII digits are a date's parts.
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    first, second, third = (int(p) for p in parts)
    if not (first and second and third):  # 0000-00-00 and 2024-00-00 are databases' "no date"
        return None
    # ISO (2024-03-05) or day first (05.03.2024): the four-digit part is the year.
    return (first, second, third) if len(parts[0]) == 4 else (third, second, first)


def _level_date(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    if a == b:
        return 0
    if a[0] == b[0] and a[1] == b[2] and a[2] == b[1]:
        return 1
    if sum(x != y for x, y in zip(a, b, strict=True)) == 1:
        return 2
    return 3


# ---- number ----------------------------------------------------------------------------------


def _prepare_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(_text(value).replace(",", "."))
    except ValueError:
        return None
    # "nan" and "inf" parse, but are no amount: NaN never equals itself, and inf is within 1% of any number.
    return number if math.isfinite(number) else None


def _level_number(a: float, b: float) -> int:
    if a == b:
        return 0
    return 1 if abs(a - b) <= 0.01 * max(abs(a), abs(b)) else 2


# ---- person name (first and last) ------------------------------------------------------------


@lru_cache(maxsize=16384)
def soundex(name: str) -> str:
    """American Soundex of a normalised name ("robert" -> "r163"): a phonetic key for spelling variants."""
    codes = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3")}
    codes.update({"l": "4", "m": "5", "n": "5", "r": "6"})
    letters = [c for c in name if "a" <= c <= "z"]
    if not letters:
        return ""
    out = [letters[0]]
    previous = codes.get(letters[0], "")
    for c in letters[1:]:
        code = codes.get(c, "")
        if code and code != previous:
            out.append(code)
        if c not in "hw":
            previous = code
    return "".join(out)[:4].ljust(4, "0")


@dataclass(frozen=True)
class _Name:
    first: str
    last: str
    first_groups: frozenset[int]
    first_sound: str
    last_sound: str


def _prepare_person(value: Any) -> _Name | None:
    first_raw, last_raw = value if isinstance(value, tuple) else (None, value)
    first = "" if _missing(first_raw) else _plain(first_raw)
    last = "" if _missing(last_raw) else _plain(last_raw)
    if not last and not first:
        return None
    return _Name(first, last, name_groups(first), soundex(first), soundex(last))


def _similar_first(a: _Name, b: _Name) -> bool:
    if not a.first or not b.first:
        return True  # a missing first name neither agrees nor disagrees
    if a.first_groups & b.first_groups:
        return True
    if len(a.first) == 1 or len(b.first) == 1:
        return a.first[0] == b.first[0]  # an initial
    return a.first_sound == b.first_sound or JaroWinkler.normalized_similarity(a.first, b.first) >= 0.88


def _similar_last(a: str, b: str, sound_a: str, sound_b: str) -> bool:
    return a == b or sound_a == sound_b or JaroWinkler.normalized_similarity(a, b) >= 0.88


def _level_person(a: _Name, b: _Name) -> int:
    if a.first == b.first and a.last == b.last:
        return 0
    if a.first and a.first == b.last and a.last == b.first:
        return 1
    if a.last == b.last:
        return 2 if _similar_first(a, b) else 4
    if _similar_last(a.last, b.last, a.last_sound, b.last_sound) and _similar_first(a, b):
        return 3
    return 5


def _entry(
    kind: str, levels: tuple[str, ...], prepare: Callable[[Any], Any], level: Callable[[Any, Any], int]
) -> Comparison:
    return Comparison(kind, (*levels, "different"), _memo(prepare), level)


COMPARISONS: dict[ComparisonKind, Comparison] = {
    c.kind: c
    for c in (
        _entry("exact", ("exact",), _prepare_exact, _level_exact),
        _entry("identifier", ("exact", "one-edit"), _prepare_identifier, _level_identifier),
        _entry("text", ("exact", "jaro-winkler>=0.92", "jaro-winkler>=0.80"), _prepare_text, _level_text),
        _entry(
            "company",
            ("exact", "token-sort>=0.90", "token-set>=0.90", "token-sort>=0.75"),
            _prepare_company,
            _level_company,
        ),
        _entry("address", ("exact", "token-sort>=0.90", "jaro-winkler>=0.85"), _prepare_address, _level_address),
        _entry("postcode", ("exact", "same-area"), _prepare_postcode, _level_postcode),
        _entry("email", ("exact", "same-mailbox", "similar-mailbox"), _prepare_email, _level_email),
        _entry("phone", ("exact", "one-digit"), _prepare_phone, _level_phone),
        _entry("date", ("exact", "day-month-swapped", "one-part"), _prepare_date, _level_date),
        _entry("number", ("exact", "within-1%"), _prepare_number, _level_number),
        Comparison(
            "personName",
            ("exact", "swapped", "last-exact-first-similar", "similar", "last-exact-first-different", "different"),
            _memo(_prepare_person),
            _level_person,
            arity=2,
        ),
    )
}


def comparison(kind: ComparisonKind) -> Comparison:
    """The comparison of a kind; KeyError names the kinds there are."""
    try:
        return COMPARISONS[kind]
    except KeyError:
        raise KeyError(f"unknown comparison {kind!r}; one of {', '.join(sorted(COMPARISONS))}") from None
