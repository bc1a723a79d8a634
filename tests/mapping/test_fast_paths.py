"""The mapping's fast paths give what the plain code they replace gives, on inputs chosen to
reach every branch (random, seeded: the same cases every run)."""

from __future__ import annotations

import random
import uuid

from fhir_hub.mapping.claims_xml import _WS, _compact
from fhir_hub.mapping.engine import NAMESPACE, uuid5


def test_uuid5_is_the_standard_library_s() -> None:
    rng = random.Random(5)
    names = ["", "a", "00999/HOSO.1/patient/00999/HOSO.1/XML1/1", "Nguyễn Văn A", "\U0001f600"]
    names += ["".join(chr(rng.randint(32, 0x3000)) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for name in names:
        assert uuid5(name) == str(uuid.uuid5(NAMESPACE, name)), name


def test_compact_is_the_regex_substitution() -> None:
    rng = random.Random(11)
    alphabet = "ab+/= \t\n\r\x0b\x0c\x1c\x85\u00a0é"  # \x1c, \x85, NBSP: str whitespace, not bytes \s
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert _compact(text) == _WS.sub(b"", text.encode("ascii", "replace")).decode("ascii"), repr(text)
