"""The mapping's fast paths give what the plain code they replace gives, on inputs chosen to
reach every branch (random, seeded: the same cases every run)."""

from __future__ import annotations

import gc
import random
import uuid

from fhir_hub.mapping import map_file
from fhir_hub.mapping.claims_xml import _WS, _compact
from fhir_hub.mapping.engine import NAMESPACE, uuid5
from tests.mapping.conftest import RECORDED, sample_files


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


def _in_generation(obj: object, generation: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


def test_the_mapped_result_is_handed_to_the_oldest_generation() -> None:
    """With the collector on, what a file's mapping made is in the oldest generation afterwards
    (not the youngest, where the next allocation would walk all of it), and the collector is on."""
    assert gc.isenabled() and gc.get_freeze_count() == 0
    result = map_file(sample_files()[0].read_bytes(), "sample.xml", recorded=RECORDED)
    bundle = result.hosos[0].bundle
    assert bundle is not None and gc.isenabled() and gc.get_freeze_count() == 0
    assert _in_generation(bundle, 2) and not _in_generation(bundle, 0)


def test_objects_frozen_by_someone_else_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        result = map_file(sample_files()[0].read_bytes(), "sample.xml", recorded=RECORDED)
        assert result.hosos[0].bundle is not None and gc.isenabled()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
