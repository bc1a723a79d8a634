"""The mapping's fast paths give what the plain code they replace gives, on inputs chosen to
reach every branch (random, seeded: the same cases every run)."""

from __future__ import annotations

import random
import uuid

from fhir_hub.mapping.claims_xml import _HOSO_BYTES, _WS, _compact, _hoso_slices
from fhir_hub.mapping.engine import NAMESPACE, uuid5

_PIECES = (b"<HOSO>", b"</HOSO>", b"x", b"<a>", b"\n")
#: Spellings the fast path must hand to the regex: attributes, spaces, longer names, unclosed tags.
_ODD = (b"<HOSO >", b"</HOSO >", b"<HOSOX>", b"</HOSO", b"<HOSO", b"<HOSO a='1'>", b"<")


def test_uuid5_is_the_standard_library_s() -> None:
    rng = random.Random(5)
    names = ["", "a", "00999/HOSO.1/patient/00999/HOSO.1/XML1/1", "Nguyễn Văn A", "\U0001f600"]
    names += ["".join(chr(rng.randint(32, 0x3000)) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for name in names:
        assert uuid5(name) == str(uuid.uuid5(NAMESPACE, name)), name


def test_hoso_slices_are_the_regex_s() -> None:
    rng = random.Random(7)
    for i in range(30000):
        pieces = _PIECES if i % 2 else _PIECES + _ODD
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert _hoso_slices(data) == _HOSO_BYTES.findall(data), data


def test_hoso_slices_of_a_plain_envelope() -> None:
    data = b"<D><HOSO><F>1</F></HOSO>\n<HOSO><F>2</F></HOSO><HOSO>unclosed</D>"
    assert _hoso_slices(data) == [b"<HOSO><F>1</F></HOSO>", b"<HOSO><F>2</F></HOSO>"]


def test_compact_is_the_regex_substitution() -> None:
    rng = random.Random(11)
    alphabet = "ab+/= \t\n\r\x0b\x0c\x1c\x85\u00a0é"  # \x1c, \x85, NBSP: str whitespace, not bytes \s
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert _compact(text) == _WS.sub(b"", text.encode("ascii", "replace")).decode("ascii"), repr(text)
