"""PII redaction at ingest: personal data is replaced by typed placeholders before
anything is stored, so it never reaches the database, a reviewer, an export, a webhook
or a log.

A queue's ``redaction`` lists what to remove: built-in detectors by name, and custom
rules ``{"name": "ORDER", "pattern": "ORD-\\\\d{6}"}``. It applies to every string of an
item's input, output, retrieved sources and metadata (keys included), and the item
keeps how many of each it replaced (``items.redactions``, e.g. ``{"EMAIL": 2}``).

Built-in detectors, each checked beyond its shape where a check exists:

- ``email``: addresses (``[EMAIL]``);
- ``phone``: phone numbers that the ``phonenumbers`` library parses as valid, in
  international form or as numbers of the queue's region (``[PHONE]``);
- ``card``: payment card numbers of 13-19 digits that pass the Luhn check (``[CARD]``);
- ``iban``: IBANs whose mod-97 checksum holds (``[IBAN]``);
- ``ip``: IPv4 and IPv6 addresses that parse as such (``[IP]``);
- ``ssn``: US social security numbers in ``123-45-6789`` form, without the numbers the
  SSA never issues (``[SSN]``).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import phonenumbers

from .errors import invalid

DETECTORS = ("email", "phone", "card", "iban", "ip", "ssn")
PHONE_REGION = "US"
_CUSTOM_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")

# Addresses in any script (IDN: "josé@bücher.de", "用户@例子.广告"): letters and digits
# of any alphabet in the local part and the domain, a top-level domain of letters (or
# its punycode form).
_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*"
    r"\.(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)(?![\w-])"
)
# What separates the groups of a number as people write it: spaces (the no-break and
# thin ones too), dots, dashes.
_SEP = "[ .\u00a0\u2007\u2009\u202f-]"
# Card numbers as they are written: groups of four (16-19 digits), Amex's 4-6-5, or one
# run of 13-19 digits; never a run that continues a longer number.
# Patterns that start with a digit say so first (the lookbehind comes after it): Python's
# re then skips ahead to the next digit instead of trying the lookbehind at every
# position, 5-7x faster on ordinary text.
_CARD = re.compile(
    rf"\d(?<!\d\d)(?<!\d-\d)(?:\d{{3}}(?:{_SEP}\d{{4}}){{3}}(?:{_SEP}?\d{{1,3}})?|\d{{3}}{_SEP}\d{{6}}{_SEP}\d{{5}}"
    r"|\d{12,18})(?!\d)"
)
# IBANs as they are written: country, check digits, then groups of four (or none),
# apart by spaces or dashes, in either case.
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]{4}){2,7}(?:[ -]?[A-Za-z0-9]{1,3})?\b")
# An address may end a sentence: a dot after it is not part of it.
_IPV4 = re.compile(r"\d(?<![\d.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![:\w])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![:\w])")
_SSN = re.compile(r"(\d(?<!\d\d)\d\d)-(\d{2})-(\d{4})(?!\d)")
_DIGIT = re.compile(r"\d")
# A phone number has seven digits or more, apart only by separators: without such a
# run the (slow) phone matcher is not called.
_PHONE_LIKE = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6}")
_INTL_00 = re.compile(r"(?<![\d+])00(?=[1-9])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and _luhn(digits)


#: The first digits of card numbers that networks issue (Visa 4, Mastercard 51-55 and
#: 2221-2720, Amex 34/37, Discover 6011/64-65, JCB 35, Diners 30/36/38, UnionPay 62,
#: Maestro 50/56-69): how an identifier is told from a card (:meth:`Redactor.detect`).
_ISSUED = re.compile(r"^(?:4|5[0-9]|2[2-7]|3[0-8]|6[0-9])")


def _iban_valid(text: str) -> bool:
    text = re.sub(r"[ -]", "", text).upper()
    if not 15 <= len(text) <= 34:
        return False
    rearranged = text[4:] + text[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban(match: re.Match) -> int:
    """How much of the match is an IBAN (0: none). The pattern may have run on into the
    next word ("... 1332 instead" reads as one more group): shorter ends are tried,
    at the group boundaries, longest first."""
    text = match.group()
    ends = [m.start() for m in re.finditer(r"[ -]", text)] + [len(text)]
    for end in sorted(set(ends), reverse=True):
        if _iban_valid(text[:end]):
            return end
    return 0


def _ip(match: re.Match) -> bool:
    try:
        ipaddress.ip_address(match.group())
        return True
    except ValueError:
        return False


def _ssn(match: re.Match) -> bool:
    area, group, serial = match.groups()
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


#: name -> (placeholder, pattern, check of a match, what a text must hold to be worth
#: searching: "@", ":" or "0" for any digit)
_REGEX_DETECTORS: dict[str, list[tuple[str, re.Pattern, Callable[[re.Match], bool] | None, str]]] = {
    "email": [("EMAIL", _EMAIL, None, "@")],
    "card": [("CARD", _CARD, _card, "0")],
    "iban": [("IBAN", _IBAN, _iban, "0")],
    "ip": [("IP", _IPV4, _ip, "0"), ("IP", _IPV6, _ip, ":")],
    "ssn": [("SSN", _SSN, _ssn, "0")],
}
# Cards before phone numbers: a card number also looks like a long phone number.
_ORDER = ("email", "iban", "card", "ssn", "ip", "phone")


def check_rules(rules: list[Any]) -> list[Any]:
    """Validate a queue's redaction setting; returns it."""
    seen = set()
    for n, rule in enumerate(rules):
        if isinstance(rule, str):
            if rule not in DETECTORS:
                raise invalid(
                    "redaction", f"{rule!r} is not a detector; the detectors are {', '.join(DETECTORS)}"
                )
            key = rule
        elif isinstance(rule, dict) and set(rule) == {"name", "pattern"}:
            if not isinstance(rule["name"], str) or not _CUSTOM_NAME.match(rule["name"]):
                raise invalid(
                    "redaction", f"rule {n}: name must be 1-32 capitals, digits or _, like ORDER_ID"
                )
            try:
                re.compile(rule["pattern"])
            except (re.error, TypeError) as exc:
                raise invalid(
                    "redaction", f"rule {n} ({rule['name']}): not a regular expression: {exc}"
                ) from None
            key = rule["name"]
        else:
            raise invalid("redaction", f'rule {n}: a detector name or {{"name": ..., "pattern": ...}}')
        if key in seen:
            raise invalid("redaction", f"{key} is listed twice")
        seen.add(key)
    return rules


class Redactor:
    """The compiled rules of one queue."""

    def __init__(self, rules: list[Any], region: str = PHONE_REGION):
        self.region = region
        self.phone = "phone" in rules
        self.steps: list[tuple[str, re.Pattern, Callable | None, str]] = []
        for name in _ORDER:
            if name in rules and name in _REGEX_DETECTORS:
                self.steps.extend(_REGEX_DETECTORS[name])
        for rule in rules:
            if isinstance(rule, dict):
                self.steps.append((rule["name"], re.compile(rule["pattern"]), None, ""))

    def text(self, text: str, counts: Counter) -> str:
        digits = _DIGIT.search(text) is not None
        for placeholder, pattern, check, needs in self.steps:
            if (needs == "0" and not digits) or (needs and needs != "0" and needs not in text):
                continue
            if check is None:
                text, n = pattern.subn(f"[{placeholder}]", text)
                if n:
                    counts[placeholder] += n
            else:
                text = pattern.sub(lambda m, p=placeholder, c=check: _replace(m, p, c, counts), text)
        if self.phone and digits and _PHONE_LIKE.search(text):
            text = self._phones(text, counts)
        return text

    def _phones(self, text: str, counts: Counter) -> str:
        for start, end in reversed(self._phone_spans(text)):
            text = text[:start] + "[PHONE]" + text[end:]
            counts["PHONE"] += 1
        return text

    def _phone_spans(self, text: str, *, international_only: bool = False) -> list[tuple[int, int]]:
        # The "00" international prefix (Europe's), read as "+": " +" keeps every offset.
        seen = _INTL_00.sub(" +", text)
        spans = []
        for match in phonenumbers.PhoneNumberMatcher(seen, self.region, leniency=phonenumbers.Leniency.VALID):
            if international_only and "+" not in match.raw_string:
                continue
            start = match.start
            if start > 0 and seen[start] == "+" and text[start] == "0":  # "00", read as " +"
                start -= 1
            spans.append((start, match.end))
        return spans

    def value(self, value: Any, counts: Counter) -> Any:
        """Every string of a JSON value redacted (object keys too), and every number
        checked as the text it is written as: a card or phone number sent as a JSON
        number becomes its placeholder (a string)."""
        if isinstance(value, str):
            return self.text(value, counts)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            written = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
            redacted = self.text(written, counts)
            return value if redacted == written else redacted
        if isinstance(value, dict):
            return {
                self.text(k, counts) if isinstance(k, str) else k: self.value(v, counts)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v, counts) for v in value]
        return value

    def detect(self, text: str) -> list[str]:
        """The kinds of personal data in an identifier (``external_id``, ``model``,
        ``predicted_label``...), which is checked, never redacted. Phone numbers count
        there only in international form (+44..., 0044...), and card numbers only with
        an issuer's first digits: a plain numeric order id must not be taken for either."""
        counts: Counter = Counter()
        digits = _DIGIT.search(text) is not None
        for placeholder, pattern, check, needs in self.steps:
            if (needs == "0" and not digits) or (needs and needs != "0" and needs not in text):
                continue
            for match in pattern.finditer(text):
                if check is _card and not _ISSUED.match(re.sub(r"\D", "", match.group())):
                    continue
                if check is None or check(match):
                    counts[placeholder] += 1
        if (
            self.phone
            and digits
            and _PHONE_LIKE.search(text)
            and self._phone_spans(text, international_only=True)
        ):
            counts["PHONE"] += 1
        return sorted(counts)


def _replace(match: re.Match, placeholder: str, check: Callable, counts: Counter) -> str:
    verdict = check(match)
    if verdict is True or (verdict and verdict == len(match.group())):
        counts[placeholder] += 1
        return f"[{placeholder}]"
    if verdict:  # only the first ``verdict`` characters are the thing
        counts[placeholder] += 1
        return f"[{placeholder}]" + match.group()[verdict:]
    return match.group()


_cache: dict[str, Redactor] = {}


def redactor(rules: list[Any]) -> Redactor | None:
    """The compiled redactor for ``rules`` (none when there is nothing to redact)."""
    if not rules:
        return None
    key = repr(rules)
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = Redactor(rules)
    return found
