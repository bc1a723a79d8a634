"""Patient reconciliation on the server: golden records, links and review items, in the unit of work.

The model follows HAPI's MDM (golden resources, links with a match result and how they were
made) in plain R4 resources, so that everything lives in the store and can be searched:

* A **golden Patient** per person, id assigned by the hub, tagged ``urn:fhir-hub:mpi|golden``.
  Its content is a pure function of its sources (:func:`compose`): the identifiers of every
  source (deduplicated), name, gender, birth date, address and telecom of the first source (by
  id) that has them, one ``link`` ``seealso`` per source, one ``replaces`` per golden record
  merged into it, and the blocking keys of every source as ``meta.tag`` under
  ``urn:fhir-hub:mpi:key`` (so candidates are found with a token search, on any worker and after
  a restart). Because it is recomputed from its sources, undoing a link restores it exactly.
* **Source Patients** are what facilities send; they are never rewritten (no new version).
* A **link record** per source: a ``Basic`` (code ``urn:fhir-hub:mpi-link|match``, ``subject`` the
  source, ``identifier`` ``urn:fhir-hub:mpi:golden|<golden id>``) whose ``decision`` extension says
  how the link was made (rule, outcome, score, fields agreed and disagreed, reasons, time, actor,
  automatic or manual, the previous golden record). Each decision is a new version of it; when
  the source is deleted its code becomes ``deleted`` (the golden record it was in is kept, so
  writing the source again puts it back there).
* **The life of a source** (:class:`Reconciler`): an update that changes what matching reads is
  re-evaluated against the person made of the golden record's other sources, and the source moves
  when it no longer matches (the link naming the golden record it left); a delete recomputes its
  golden record from the other sources, or retires it (a delete, history kept) with the last one.
* A **review item** per (source, candidate golden) pair the rules sent to review: a ``Basic``
  with code ``possible-match``; accepting it links, rejecting it sets ``no-match``.
* An **AuditEvent** per decision (every automatic one on the write path, every steward's one):
  who, when, the rule and score, the source and golden records (:func:`audit`). Clients cannot
  write AuditEvents while reconciliation is on (:func:`refuse_audit_write`).

Everything here runs on the writer inside the caller's unit of work (:class:`~fhir_hub.storage.
port.Tx`), so a source, its golden record and its link commit together or not at all, and the
single writer serialises two submissions of one new person: the second sees the first's golden.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.mpi import blocking
from fhir_hub.mpi.config import MatchConfig
from fhir_hub.mpi.features import Features, extract
from fhir_hub.mpi.index import Lookup
from fhir_hub.mpi.rules import Decision, Outcome, Rule, decide, match
from fhir_hub.mpi.score import Level
from fhir_hub.rest.write import new_id
from fhir_hub.search.query import Clause, ReferenceValue, TokenValue
from fhir_hub.storage.port import Tx

MPI = "urn:fhir-hub:mpi"
GOLDEN_TAG = {"system": MPI, "code": "golden"}
LINK_TAG = {"system": MPI, "code": "link"}
REVIEW_TAG = {"system": MPI, "code": "review"}
#: ``meta.tag`` system of a golden record's blocking keys (``fhir_hub.mpi.blocking``)
KEY_SYSTEM = f"{MPI}:key"
#: ``Basic.code`` system of link records and review items
LINK_STATE = f"{MPI}-link"
#: ``Basic.identifier`` system carrying the golden record's id
GOLDEN_ID = f"{MPI}:golden"
DECISION_EXT = f"{MPI}:decision"

#: link states (``DELETED``: the source was deleted; the record remembers its golden record)
MATCH, POSSIBLE_MATCH, NO_MATCH, DELETED = "match", "possible-match", "no-match", "deleted"
AUTO_ACTOR = "fhir-hub mpi (automatic)"
#: The actor of a merge a facility asked for by writing a Patient ``link`` ``replaced-by``
#: another (HL7 v2 ADT^A40 comes as such a PATCH, ``fhir_hub/mapping/merge.py``).
REPLACED_ACTOR = "fhir-hub mpi (Patient.link replaced-by)"

AUDIT_TAG = {"system": MPI, "code": "audit"}
#: ``AuditEvent.subtype`` system: the decision (``auto-link``, ``new``, ``review``, ``link``,
#: ``unlink``, ``reject``, ``merge``, ``unmerge``; on the write path also ``delete`` and ``restore``
#: of a source)
AUDIT_SUBTYPE = f"{MPI}-audit"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"

#: Candidates per blocking key on the write path: each costs a read and a comparison inside the
#: writer's unit, so a key shared by more goldens than this is skipped (and the decision says so).
SERVER_CONFIG = MatchConfig(max_block=200)

_AGREE = {Level.EXACT, Level.FOLDED, Level.FUZZY, Level.NEAR, Level.SWAPPED, Level.MONTH, Level.YEAR}
_PERSON = ("name", "gender", "birthDate", "address", "telecom")


def is_golden(resource: dict[str, Any]) -> bool:
    return any(t.get("system") == MPI and t.get("code") == "golden"
               for t in (resource.get("meta") or {}).get("tag") or ())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@lru_cache(maxsize=4096)
def link_id(source: str) -> str:
    """The id of a source's link record (derived, so no search is needed to find it)."""
    return f"mpil-{_digest(source)}"


def review_id(source: str, golden: str) -> str:
    return f"mpir-{_digest(source + '|' + golden)}"


def _ref(rid: str) -> dict[str, str]:
    return {"reference": f"Patient/{rid}"}


def _ref_id(ref: Any) -> str | None:
    text = ref.get("reference") if isinstance(ref, dict) else None
    return text.split("/", 1)[1] if isinstance(text, str) and text.startswith("Patient/") else None


def _body(tx: Tx, rtype: str, rid: str) -> dict[str, Any] | None:
    v = tx.current(rtype, rid)
    if v is None or v.body is None:
        return None
    loaded: dict[str, Any] = orjson.loads(v.body)
    return loaded


@lru_cache(maxsize=4096)
def _stored_features(body: bytes) -> Features:
    """The features of a stored Patient, by its stored bytes: a pure function of them, so a
    golden record read again (the same candidate for many incoming copies of common names, the
    golden record a new source joins) is neither parsed nor extracted again. Keyed by content,
    not by id and version: a unit that rolled back may have left a version number to be
    written again with other content."""
    return extract(orjson.loads(body))


# -- golden records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Golden:
    """What a golden record is made of."""

    id: str
    sources: tuple[str, ...] = ()
    merged: tuple[str, ...] = ()
    replaced_by: str | None = None

    @classmethod
    def of(cls, gid: str, body: dict[str, Any] | None) -> Golden:
        links = (body or {}).get("link") or ()
        by_type: dict[str, list[str]] = {}
        for link in links:
            other = _ref_id(link.get("other"))
            if other is not None:
                by_type.setdefault(link.get("type", ""), []).append(other)
        replaced = by_type.get("replaced-by", [])
        return cls(gid, tuple(by_type.get("seealso", ())), tuple(by_type.get("replaces", ())),
                   replaced[0] if replaced else None)


def _identifier_key(identifier: dict[str, Any]) -> tuple[str, str]:
    return str(identifier.get("system", "")), str(identifier.get("value", ""))


def compose(gid: str, sources: Sequence[tuple[str, dict[str, Any]]], merged: Iterable[str] = (),
            replaced_by: str | None = None, features: Mapping[str, Features] | None = None,
            stored_keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The golden record of ``sources`` (id, body): a pure function, so recomputing after an
    undo gives back exactly the record before.

    ``features`` holds ``extract(body)`` of sources the caller has already extracted (the
    Patient being matched), so their blocking keys are not computed a second time; it must be
    the features of the very bodies given. ``stored_keys``, when given, are the blocking keys
    of every source not in ``features`` (the stored golden record's key tags, when sources are
    only added to it), which are then not extracted at all."""
    if replaced_by is not None:  # merged away: no identifiers, no keys, points at the survivor
        return {"resourceType": "Patient", "id": gid, "meta": {"tag": [GOLDEN_TAG]}, "active": False,
                "link": [{"other": _ref(replaced_by), "type": "replaced-by"}]}
    ordered = sorted(sources, key=lambda s: s[0])
    identifiers: dict[tuple[str, str], dict[str, Any]] = {}
    keys: set[str] = set()
    for sid, body in ordered:
        for identifier in body.get("identifier") or ():
            if isinstance(identifier, dict):
                identifiers.setdefault(_identifier_key(identifier), identifier)
        known = features.get(sid) if features is not None else None
        if known is not None:
            keys.update(blocking.keys(known))
        elif stored_keys is None:
            keys.update(blocking.keys(extract(body)))
    keys.update(stored_keys or ())
    person: dict[str, Any] = {}
    for element in _PERSON:
        for _, body in ordered:
            if body.get(element):
                person[element] = body[element]
                break
    return _golden_body(gid, person, keys, identifiers, [sid for sid, _ in ordered], merged)


def _golden_body(gid: str, person: dict[str, Any], keys: Iterable[str],
                 identifiers: dict[tuple[str, str], dict[str, Any]], sources: Sequence[str],
                 merged: Iterable[str]) -> dict[str, Any]:
    """A live golden record from its parts (``sources`` sorted by id), in :func:`compose`'s order."""
    out: dict[str, Any] = {"resourceType": "Patient", "id": gid, **person}
    out["meta"] = {"tag": [GOLDEN_TAG, *({"system": KEY_SYSTEM, "code": k} for k in sorted(keys))]}
    if identifiers:
        out["identifier"] = list(identifiers.values())
    out["active"] = True
    out["link"] = ([{"other": _ref(sid), "type": "seealso"} for sid in sources]
                   + [{"other": _ref(m), "type": "replaces"} for m in sorted(set(merged))])
    return out


def _compose_added(current: dict[str, Any], golden: Golden, body: dict[str, Any] | None,
                   features: Features | None) -> dict[str, Any] | None:
    """:func:`compose` of ``golden``'s sources, when ``golden`` is the stored golden record
    ``current`` with one more source (``body``, its ``features``) whose id sorts after all of
    them — the usual automatic link, server-assigned ids growing with time. Then each person
    element ``current`` has came from an earlier source and stays, one it lacks is the new
    source's, its identifiers follow the stored ones and its keys join the stored key tags:
    the same record, without reading and parsing every other source back (a person seen at
    ten facilities would cost ten reads per visit). ``None`` when it does not apply."""
    stored = Golden.of(golden.id, current)
    sid = golden.sources[-1] if golden.sources else None
    if (sid is None or body is None or features is None or not stored.sources or stored.replaced_by is not None
            or golden.replaced_by is not None or golden.merged != stored.merged
            or golden.sources[:-1] != stored.sources or any(sid <= s for s in stored.sources)):
        return None
    person = {e: v for e in _PERSON if (v := current.get(e) or body.get(e))}
    identifiers = {_identifier_key(i): i for i in current.get("identifier") or () if isinstance(i, dict)}
    for identifier in body.get("identifier") or ():
        if isinstance(identifier, dict):
            identifiers.setdefault(_identifier_key(identifier), identifier)
    keys = {*_key_tags(current), *blocking.keys(features)}
    return _golden_body(golden.id, person, keys, identifiers, golden.sources, golden.merged)


def _same(stored: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if stored is None:
        return False
    meta = dict(stored.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    return {**stored, "meta": meta} == new


def write_golden(tx: Tx, golden: Golden, known: dict[str, dict[str, Any]] | None = None,
                 fresh: bool = False, features: Mapping[str, Features] | None = None,
                 current: dict[str, Any] | None = None, added: bool = False) -> None:
    """Write (or delete, when it has no source left) the golden record ``golden`` describes.

    ``known`` holds source bodies the caller has at hand (the Patient just written): reading
    back what the unit just wrote would make the SQLite writer send its buffered rows first;
    ``features`` their extracted features (:func:`compose`). ``fresh`` says ``golden.id`` was
    just made, so there is nothing stored to compare with; ``current`` is the stored golden
    record when the caller has just read it (matching did), so it is not read again. ``added``
    says ``golden`` is the stored record with the sources of ``features`` added (an automatic
    link): the record is then derived from the stored one (:func:`_compose_added`) when the new
    source sorts last, else the stored key tags stand for the other sources' keys, so those
    sources are not extracted again (a person seen at ten facilities would otherwise cost ten
    extractions per visit)."""
    if current is None and not fresh:
        current = _body(tx, "Patient", golden.id)
    if not golden.sources and golden.replaced_by is None:
        if current is not None:
            tx.delete("Patient", golden.id)
        return
    if added and current is not None and features:
        sid = golden.sources[-1] if golden.sources else ""
        composed = _compose_added(current, golden, (known or {}).get(sid), features.get(sid))
        if composed is not None:
            tx.put("Patient", golden.id, composed, "PUT")
            return
    stored = _key_tags(current) if added and current is not None and features else None
    sources = []
    extracted: dict[str, Features] = dict(features or {})
    for sid in dict.fromkeys(golden.sources):
        if known is not None and sid in known:
            sources.append((sid, known[sid]))
            continue
        v = tx.current("Patient", sid)
        if v is not None and v.body is not None:
            sources.append((sid, orjson.loads(v.body)))
            if stored is None:
                extracted.setdefault(sid, _stored_features(v.body))
    new = compose(golden.id, sources, golden.merged, golden.replaced_by, extracted, stored)
    if not _same(current, new):
        tx.put("Patient", golden.id, new, "PUT" if current is not None else "POST", fresh=fresh)


def _key_tags(body: dict[str, Any]) -> list[str]:
    """The blocking keys a golden record carries (``meta.tag`` under :data:`KEY_SYSTEM`)."""
    return [str(t.get("code")) for t in (body.get("meta") or {}).get("tag") or ()
            if isinstance(t, dict) and t.get("system") == KEY_SYSTEM]


def golden_of(tx: Tx, gid: str) -> Golden:
    return Golden.of(gid, _body(tx, "Patient", gid))


def _active_golden(tx: Tx, gid: str) -> Golden:
    body = _body(tx, "Patient", gid)
    if body is None or not is_golden(body):
        raise FhirError(404, error("not-found", f"Patient/{gid} is not a golden record"))
    golden = Golden.of(gid, body)
    if golden.replaced_by is not None:
        raise FhirError(409, error("conflict", f"Patient/{gid} was merged into Patient/{golden.replaced_by}"))
    return golden


def _source(tx: Tx, sid: str) -> dict[str, Any]:
    body = _body(tx, "Patient", sid)
    if body is None:
        raise FhirError(404, error("not-found", f"Patient/{sid} does not exist"))
    if is_golden(body):
        raise FhirError(400, error("invalid", f"Patient/{sid} is a golden record, not a source Patient"))
    return body


# -- candidates -------------------------------------------------------------------------------


class TxCandidates:
    """The golden records sharing a blocking key, found by a token search on their
    ``urn:fhir-hub:mpi:key`` tags inside the unit of work (a :class:`~fhir_hub.mpi.index.
    CandidateSource` whose keys are written with the golden records themselves)."""

    def __init__(self, tx: Tx, exclude: Iterable[str] = ()):
        self._tx = tx
        self._exclude = frozenset(exclude)

    def add(self, person_id: str, keys: Iterable[str]) -> None:
        """Nothing to do: a golden record carries its keys (:func:`compose`)."""

    def remove(self, person_id: str) -> None:
        """Nothing to do: a golden record carries its keys (:func:`compose`)."""

    def lookup(self, keys: Iterable[str], max_block: int | None = None) -> Lookup:
        """One token search for all ``keys`` (their values OR'd): when it finds at most
        ``max_block`` golden records, no key's block can be larger, so that is the answer; only
        beyond that is each key searched alone, to skip the ones over the cap."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return Lookup(frozenset())
        limit = (max_block or 1000) + 1
        ids = self._tx.find("Patient", [_key_clause(wanted)], limit)
        if len(ids) < limit or len(wanted) == 1:
            if max_block is not None and len(ids) > max_block:
                return Lookup(frozenset(), tuple(wanted))
            return Lookup(frozenset(i for i in ids if i not in self._exclude))
        found: set[str] = set()
        skipped: list[str] = []
        for key in wanted:
            ids = self._tx.find("Patient", [_key_clause([key])], limit)
            if max_block is not None and len(ids) > max_block:
                skipped.append(key)
            else:
                found.update(i for i in ids if i not in self._exclude)
        return Lookup(frozenset(found), tuple(skipped))


def _key_clause(keys: Sequence[str]) -> Clause:
    return Clause("_tag", "token", tuple(TokenValue(KEY_SYSTEM, k) for k in keys))


def _features(tx: Tx, gid: str) -> Features:
    v = tx.current("Patient", gid)
    return extract({}) if v is None or v.body is None else _stored_features(v.body)


class _Candidates:
    """Golden records' features for one decision, each read once (the deterministic and the
    probabilistic pass of :func:`~fhir_hub.mpi.rules.match` may both ask for a candidate), and
    their stored bytes, so the golden record the decision picks is not read again to be written.
    Features come from :func:`_stored_features`; a body is parsed only for its key tags
    (:meth:`keys_of`, which candidates are worth scoring) or when it is the one linked."""

    __slots__ = ("_tx", "_raw", "_bodies", "_features")

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._raw: dict[str, bytes | None] = {}
        self._bodies: dict[str, dict[str, Any] | None] = {}
        self._features: dict[str, Features] = {}

    def _stored(self, gid: str) -> bytes | None:
        if gid not in self._raw:
            v = self._tx.current("Patient", gid)
            self._raw[gid] = None if v is None else v.body
        return self._raw[gid]

    def _body(self, gid: str) -> dict[str, Any] | None:
        if gid not in self._bodies:
            raw = self._stored(gid)
            self._bodies[gid] = None if raw is None else orjson.loads(raw)
        return self._bodies[gid]

    def __call__(self, gid: str) -> Features:
        found = self._features.get(gid)
        if found is None:
            raw = self._stored(gid)
            found = self._features[gid] = _stored_features(raw) if raw is not None else extract({})
        return found

    def keys_of(self, gid: str) -> list[str]:
        """The blocking keys golden record ``gid`` carries."""
        body = self._body(gid)
        return [] if body is None else _key_tags(body)

    def golden(self, gid: str) -> tuple[Golden, dict[str, Any] | None]:
        """The golden record ``gid`` and its stored body (read now unless matching did)."""
        body = self._body(gid)
        return Golden.of(gid, body), body


# -- records of decisions ---------------------------------------------------------------------


def _now(tx: Tx) -> str:
    return _instant(tx.ts)


@lru_cache(maxsize=64)
def _instant(ts: int) -> str:
    """A unit's time as an instant (asked for several times per decision, the same each time)."""
    return dt.datetime.fromtimestamp(ts / 1e6, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _decision_ext(tx: Tx, *, golden: str, rule: str, outcome: str, source: str, actor: str,
                  decision: Decision | None = None, previous: str | None = None,
                  reasons: Sequence[str] = ()) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "golden", "valueReference": _ref(golden)},
        {"url": "linkSource", "valueCode": source},
        {"url": "rule", "valueCode": rule},
        {"url": "outcome", "valueCode": outcome},
    ]
    if decision is not None:
        parts.append({"url": "score", "valueDecimal": round(decision.score, 2)})
        if decision.candidate is not None:
            parts.append({"url": "candidate", "valueReference": _ref(decision.candidate)})
    parts += [{"url": "time", "valueDateTime": _now(tx)}, {"url": "actor", "valueString": actor}]
    if previous is not None:
        parts.append({"url": "previous", "valueReference": _ref(previous)})
    for reason in (*(decision.reasons if decision else ()), *reasons):
        parts.append({"url": "reason", "valueString": reason})
    for f in decision.fields if decision else ():
        if f.level is Level.MISSING or f.weight == 0:
            continue
        kind = "agreed" if f.level in _AGREE and f.weight > 0 else "disagreed"
        parts.append({"url": kind, "valueString": f"{f.field}: {f.level} ({f.weight:+.1f})"})
    return {"url": DECISION_EXT, "extension": parts}


def _record(rid: str, tag: dict[str, str], state: str, source: str, golden: str, ext: dict[str, Any],
            ts: str) -> dict[str, Any]:
    return {"resourceType": "Basic", "id": rid, "meta": {"tag": [tag]},
            "identifier": [{"system": GOLDEN_ID, "value": golden}],
            "code": {"coding": [{"system": LINK_STATE, "code": state}]},
            "subject": _ref(source), "created": ts[:10], "extension": [ext]}


def _put_record(tx: Tx, body: dict[str, Any], fresh: bool = False) -> None:
    """Write a link record or review item; ``fresh`` says the caller has just seen that no
    version of it was ever written (not even a tombstone), so there is nothing to look up."""
    if fresh:
        tx.put("Basic", body["id"], body, "POST", fresh=True)
        return
    exists = tx.current("Basic", body["id"])
    tx.put("Basic", body["id"], body, "PUT" if exists is not None else "POST")


def decision_of(record: dict[str, Any]) -> dict[str, Any]:
    """A link record's or review item's decision extension as a plain dict (lists for repeats)."""
    out: dict[str, Any] = {"state": record["code"]["coding"][0]["code"]}
    for ext in record.get("extension") or ():
        if ext.get("url") != DECISION_EXT:
            continue
        for part in ext.get("extension") or ():
            key = part["url"]
            value = next(v for k, v in part.items() if k.startswith("value"))
            if isinstance(value, dict):
                value = _ref_id(value)
            if key in ("reason", "agreed", "disagreed"):
                out.setdefault(key, []).append(value)
            else:
                out[key] = value
    return out


def link_record(tx: Tx, sid: str) -> dict[str, Any] | None:
    return _body(tx, "Basic", link_id(sid))


def current_golden(tx: Tx, sid: str) -> str | None:
    record = link_record(tx, sid)
    if record is None or decision_of(record)["state"] != MATCH:
        return None
    return str(record["identifier"][0]["value"])


def _write_link(tx: Tx, sid: str, gid: str, ext: dict[str, Any], fresh: bool = False) -> None:
    _put_record(tx, _record(link_id(sid), LINK_TAG, MATCH, sid, gid, ext, _now(tx)), fresh)


def _entity(rtype: str, rid: str, role: str, name: str,
            detail: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"what": {"reference": f"{rtype}/{rid}"},
                           "type": {"system": "http://hl7.org/fhir/resource-types", "code": rtype},
                           "role": {"system": _OBJECT_ROLE, "code": role}, "name": name}
    if detail:
        out["detail"] = [{"type": k, "valueString": v} for k, v in detail]
    return out


def audit(tx: Tx, subtype: str, *, actor: str, rule: str, outcome: str, source: str | None = None,
          golden: str | None = None, previous: str | None = None, candidate: str | None = None,
          sources: Sequence[str] = (), decision: Decision | None = None, reasons: Sequence[str] = ()) -> None:
    """Write the AuditEvent of one decision in the caller's unit of work: ``agent`` the actor
    (``requestor`` for a steward), ``recorded`` the unit's time, ``entity`` the source (role 1
    Patient, with the rule, outcome, score and reasons as ``detail``), the golden record it ended
    in, the one it left (``previous``), a review's candidate and the sources a merge moved (role 5
    Master file for golden records), and the link record."""
    detail: list[tuple[str, str]] = [("rule", rule), ("outcome", outcome)]
    if decision is not None:
        detail.append(("score", f"{decision.score:.2f}"))
    detail += [("reason", r) for r in (*(decision.reasons if decision else ()), *reasons)]
    entities: list[dict[str, Any]] = []
    if source is not None:
        entities.append(_entity("Patient", source, "1", "source", detail))
    if golden is not None:
        entities.append(_entity("Patient", golden, "5", "golden", () if source else detail))
    if previous is not None:
        entities.append(_entity("Patient", previous, "5", "previous golden"))
    if candidate is not None:
        entities.append(_entity("Patient", candidate, "5", "candidate golden"))
    entities += [_entity("Patient", sid, "1", "moved source") for sid in sources]
    if source is not None:
        entities.append(_entity("Basic", link_id(source), "4", "link record"))
    manual = actor not in (AUTO_ACTOR, REPLACED_ACTOR)
    summary = f"{subtype} Patient/{source or golden}" + (f" -> Patient/{golden}" if source and golden else "")
    body = {"resourceType": "AuditEvent", "meta": {"tag": [AUDIT_TAG]},
            "type": {"system": _DCM, "code": "110110", "display": "Patient Record"},
            "subtype": [{"system": AUDIT_SUBTYPE, "code": subtype}],
            "action": "C" if subtype == "new" else "U", "recorded": _now(tx), "outcome": "0",
            "outcomeDesc": f"{summary} ({rule}" + (f", score {decision.score:.2f})" if decision else ")"),
            "agent": [{"who": {"display": actor}, "name": actor, "requestor": manual}],
            "source": {"observer": {"display": "fhir-hub mpi"},
                       "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
            "entity": entities}
    rid = new_id()
    tx.put("AuditEvent", rid, {**body, "id": rid}, "POST", fresh=True)


def refuse_audit_write(rtype: str) -> None:
    """AuditEvents are the hub's record of its decisions: with reconciliation on, no client
    writes (creates, updates, patches or deletes) one, over REST or in a bundle."""
    if rtype == "AuditEvent":
        raise FhirError(405, error("not-supported", "AuditEvent resources are written by the hub only "
                                   "(patient reconciliation is on); they can be read and searched", "AuditEvent"))


# -- the write path ---------------------------------------------------------------------------


class Reconciler:
    """What the write paths call (``ReferenceChecker.on_patient``) for every Patient written or
    deleted (``fhir_hub.rest.write.DELETED``) in the caller's unit of work."""

    def __init__(self, config: MatchConfig = SERVER_CONFIG):
        self.config = config

    def on_patient(self, tx: Tx, sid: str, resource: dict[str, Any]) -> None:
        if not resource:
            self.on_delete(tx, sid)
            return
        if is_golden(resource):  # the hub writes its own with tx.put, never through this hook
            raise _golden_written(sid)
        # a first version has no link record: link records are written for stored sources only,
        # and every later write of the Patient is a later version (the read costs as much as the
        # candidate search's SQL); the backfill asks on_patient only for sources without one
        first = (resource.get("meta") or {}).get("versionId") == "1"
        stored = None if first else tx.current("Basic", link_id(sid))
        record: dict[str, Any] | None = None if stored is None or stored.body is None else orjson.loads(stored.body)
        if record is None:
            before = _before(tx, sid, resource)
            if before is not None and is_golden(before):
                raise _golden_written(sid)
            self._place(tx, sid, resource, fresh_link=stored is None)
            if _replaced_by(resource):
                merge_replaced(tx, sid, resource)
            return
        state = decision_of(record)
        if state["state"] == DELETED:  # written again after a delete: back where it was
            self._restore(tx, sid, resource, str(record["identifier"][0]["value"]))
        elif state["state"] == MATCH:
            gid = str(record["identifier"][0]["value"])
            if state.get("linkSource") == "manual" or not self._changed(tx, sid, resource):
                write_golden(tx, golden_of(tx, gid), {sid: resource})  # a steward's decision stands
            else:
                self._rematch(tx, sid, resource, gid)
        if _replaced_by(resource):
            merge_replaced(tx, sid, resource)

    def _place(self, tx: Tx, sid: str, resource: dict[str, Any], fresh_link: bool = False) -> None:
        """A new source: linked to the person the rules find, else a new golden record
        (``fresh_link``: it never had a link record, so none is looked up to be written)."""
        incoming = extract(resource)
        seen = _Candidates(tx)
        decision = match(incoming, TxCandidates(tx), seen, self.config, seen.keys_of)
        if decision.outcome is Outcome.AUTO_LINK and decision.candidate is not None:
            golden, body = seen.golden(decision.candidate)
            write_golden(tx, Golden(golden.id, (*golden.sources, sid), golden.merged), {sid: resource},
                         features={sid: incoming}, current=body, added=True)
            _auto_link(tx, sid, golden.id, decision, fresh_link=fresh_link)
            return
        _new_person(tx, sid, new_id(), decision, body=resource, features=incoming, fresh_link=fresh_link)

    @staticmethod
    def _changed(tx: Tx, sid: str, resource: dict[str, Any]) -> bool:
        """Whether what matching compares differs from the version before (a re-sent copy, or
        an edit of what no rule reads, keeps its link without another search)."""
        before = _before(tx, sid, resource)
        return before is None or extract(before) != extract(resource)

    def _rematch(self, tx: Tx, sid: str, resource: dict[str, Any], gid: str) -> None:
        """A linked source changed what matching compares (its personal ID, name, birth date…):
        it stays when it still matches the person made of its golden record's other sources;
        else it goes where the rules now send it (another person, or a new golden record with a
        review of the old one), the link record naming the golden record it left, so ``unlink``
        or accepting the review puts it back."""
        golden = golden_of(tx, gid)
        others = [(s, b) for s in golden.sources if s != sid and (b := _body(tx, "Patient", s)) is not None]
        incoming = extract(resource)
        stay: Decision | None = None
        if others:
            stay = decide(incoming, extract(compose(gid, others)), self.config, gid)
            if stay.outcome is Outcome.AUTO_LINK:
                write_golden(tx, golden, {sid: resource})
                return
        found = _Candidates(tx)
        elsewhere = match(incoming, TxCandidates(tx, exclude=(gid,)), found, self.config, found.keys_of)
        why = (f"re-matched after an update of Patient/{sid}",)
        if elsewhere.outcome is Outcome.AUTO_LINK and elsewhere.candidate is not None:
            _move(tx, sid, gid, elsewhere.candidate)
            _auto_link(tx, sid, elsewhere.candidate, elsewhere, previous=gid, reasons=why)
        elif stay is None:  # its golden record's only source: the golden follows it
            write_golden(tx, golden, {sid: resource})
            if elsewhere.outcome is Outcome.REVIEW and elsewhere.candidate is not None:
                _open_review(tx, sid, elsewhere, why)
        else:  # no longer this person: a person of its own, under review with the old one if close
            target = new_id()
            _move(tx, sid, gid, target)
            decision = stay if stay.outcome is Outcome.REVIEW or elsewhere.outcome is not Outcome.REVIEW else elsewhere
            _new_person(tx, sid, target, decision, previous=gid,
                        reasons=(*why, f"no longer matches Patient/{gid}: {stay.outcome} by {stay.rule}, "
                                 f"score {stay.score:.2f}"))

    def on_delete(self, tx: Tx, sid: str) -> None:
        """A deleted source leaves its golden record, which is recomputed from the others, or
        retired (deleted: its history stays) when it was the last; the link record keeps where it
        was (state ``deleted``), so writing the Patient again brings both back. Its review items
        stay, out of the queue while it is deleted (:func:`reviews`)."""
        before = _before(tx, sid)
        if before is not None and is_golden(before):
            raise _golden_written(sid)
        gid = current_golden(tx, sid)
        if gid is None:
            return
        golden = golden_of(tx, gid)
        write_golden(tx, Golden(gid, tuple(s for s in golden.sources if s != sid), golden.merged, golden.replaced_by))
        retired = golden.sources == (sid,)
        reasons = (f"Patient/{sid} was deleted", *((f"Patient/{gid} retired: no source left",) if retired else ()))
        _put_record(tx, _record(link_id(sid), LINK_TAG, DELETED, sid, gid,
                                _decision_ext(tx, golden=gid, rule="delete", outcome="source-deleted", source="auto",
                                              actor=AUTO_ACTOR, reasons=reasons), _now(tx)))
        audit(tx, "delete", actor=AUTO_ACTOR, rule="delete", outcome="source-deleted", source=sid, golden=gid,
              reasons=reasons)

    def _restore(self, tx: Tx, sid: str, resource: dict[str, Any], gid: str) -> None:
        """A deleted source written again rejoins the golden record it left (brought back when
        it was retired; the survivor when it was merged since), then is re-evaluated."""
        body = _body(tx, "Patient", gid)
        golden = Golden.of(gid, body)
        if golden.replaced_by is not None:
            golden = golden_of(tx, golden.replaced_by)
        elif body is None and _revived(tx, gid, sid) is None:
            golden = Golden(new_id())
        write_golden(tx, Golden(golden.id, (*(s for s in golden.sources if s != sid), sid), golden.merged))
        reasons = (f"Patient/{sid} was written again after its delete",)
        _write_link(tx, sid, golden.id, _decision_ext(tx, golden=golden.id, rule="restore", outcome="auto-link",
                                                      source="auto", actor=AUTO_ACTOR, reasons=reasons))
        audit(tx, "restore", actor=AUTO_ACTOR, rule="restore", outcome="auto-link", source=sid, golden=golden.id,
              reasons=reasons)
        self._rematch(tx, sid, resource, golden.id)


def _replaced_by(resource: dict[str, Any]) -> list[tuple[str, ...]]:
    """The Patients ``resource`` says it is replaced by (``link`` ``replaced-by``): ``("ref",
    id)`` for a literal reference, ``("identifier", system, value)`` for a logical one."""
    out: list[tuple[str, ...]] = []
    for link in resource.get("link") or ():
        if not isinstance(link, dict) or link.get("type") != "replaced-by" or not isinstance(link.get("other"), dict):
            continue
        other = link["other"]
        rid = _ref_id(other)
        ident = other.get("identifier")
        if rid is not None:
            out.append(("ref", rid))
        elif isinstance(ident, dict) and isinstance(ident.get("value"), str):
            out.append(("identifier", str(ident.get("system") or ""), ident["value"]))
    return out


def _survivor_goldens(tx: Tx, sid: str, target: tuple[str, ...]) -> set[str]:
    """The live golden records of the Patients ``target`` names (a golden record itself, or the
    golden records of the source Patients it names, ``sid`` left out); a merged-away golden
    record stands for its survivor."""
    if target[0] == "ref":
        ids = [target[1]]
    else:
        ident = TokenValue(target[1] or None, target[2])
        ids = tx.find("Patient", [Clause("identifier", "token", (ident,))], 50)
    found: set[str] = set()
    for rid in ids:
        if rid == sid:
            continue
        body = _body(tx, "Patient", rid)
        if body is None:
            continue
        gid = rid if is_golden(body) else current_golden(tx, rid)
        for _ in range(20):  # follow replaced-by to the survivor (merges chain)
            if gid is None:
                break
            golden = golden_of(tx, gid)
            if golden.replaced_by is None:
                break
            gid = golden.replaced_by
        if gid is not None:
            found.add(gid)
    return found


def merge_replaced(tx: Tx, sid: str, resource: dict[str, Any]) -> dict[str, Any] | None:
    """A source Patient that newly says it is ``replaced-by`` another Patient (R4's merge; HL7
    v2 ADT^A40 arrives as such a PATCH) merges its person into that Patient's: the golden
    record of ``sid`` is merged (:func:`merge`) into the survivor's, so every source of the
    prior person moves, and ``$mpi-unmerge`` of it undoes it. Only a link that the version before
    did not have counts, so a re-sent message does not redo a merge a steward undid; a target
    whose Patients are in several persons, or that the hub does not know, merges nothing."""
    before = _before(tx, sid, resource)
    old = set(_replaced_by(before)) if before is not None else set()
    from_gid = current_golden(tx, sid)
    if from_gid is None:
        return None
    for target in _replaced_by(resource):
        if target in old:
            continue
        into = _survivor_goldens(tx, sid, target) - {from_gid}
        if len(into) != 1:
            continue
        into_gid = next(iter(into))
        named = f"Patient/{target[1]}" if target[0] == "ref" else f"the Patient with identifier {target[1]}|{target[2]}"
        return merge(tx, from_gid, into_gid, REPLACED_ACTOR,
                     reasons=(f"Patient/{sid} is replaced-by {named} (Patient.link)",))
    return None


def _before(tx: Tx, sid: str, written: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The version of ``Patient/sid`` before the one this unit just wrote (``written``, whose
    ``meta.versionId`` the store set; else the tombstone is read), if it had content."""
    if written is not None:
        vid = int((written.get("meta") or {}).get("versionId") or 0)
    else:
        cur = tx.current("Patient", sid)
        vid = 0 if cur is None else cur.vid
    if vid <= 1:  # a create: no version before it, and no read of what the unit just wrote
        return None
    v = tx.vread("Patient", sid, vid - 1)
    if v is None or v.body is None:
        return None
    loaded: dict[str, Any] = orjson.loads(v.body)
    return loaded


def _golden_written(sid: str) -> FhirError:
    return FhirError(409, error("conflict", f"Patient/{sid} is a golden record of patient reconciliation (tag "
                                f"{MPI}|golden): the hub writes it from its sources, clients do not (update, "
                                "delete or unlink those, or use $mpi-merge)"))


def _open_reviews_of(sid: str) -> list[Clause]:
    return [Clause("subject", "reference", (ReferenceValue(f"Patient/{sid}"),)),
            Clause("code", "token", (TokenValue(LINK_STATE, POSSIBLE_MATCH),))]


def _revived(tx: Tx, gid: str, sid: str) -> str | None:
    """``gid`` when it is a golden record retired (deleted) when ``sid`` left it, so that it can
    come back under its own id; else ``None``."""
    v = tx.current("Patient", gid)
    if v is None or not v.deleted:
        return None
    record = link_record(tx, sid)
    return gid if record is not None and str(record["identifier"][0]["value"]) == gid else None


def _auto_link(tx: Tx, sid: str, gid: str, decision: Decision, previous: str | None = None,
               reasons: Sequence[str] = (), fresh_link: bool = False) -> None:
    _write_link(tx, sid, gid, _decision_ext(tx, golden=gid, rule=str(decision.rule), outcome=str(decision.outcome),
                                            source="auto", actor=AUTO_ACTOR, decision=decision, previous=previous,
                                            reasons=reasons), fresh_link)
    audit(tx, "auto-link", actor=AUTO_ACTOR, rule=str(decision.rule), outcome=str(decision.outcome), source=sid,
          golden=gid, previous=previous, decision=decision, reasons=reasons)


def _open_review(tx: Tx, sid: str, decision: Decision, reasons: Sequence[str] = ()) -> None:
    assert decision.candidate is not None
    ext = _decision_ext(tx, golden=decision.candidate, rule=str(decision.rule), outcome=str(decision.outcome),
                        source="auto", actor=AUTO_ACTOR, decision=decision, reasons=reasons)
    _put_record(tx, _record(review_id(sid, decision.candidate), REVIEW_TAG, POSSIBLE_MATCH, sid,
                            decision.candidate, ext, _now(tx)))


def _new_person(tx: Tx, sid: str, new: str, decision: Decision, previous: str | None = None,
                reasons: Sequence[str] = (), body: dict[str, Any] | None = None,
                features: Features | None = None, fresh_link: bool = False) -> None:
    """``sid`` as the first source of golden record ``new`` — written here from ``body`` (whose
    ``features`` the caller may have extracted) when given, else already written — with a
    review of the decision's candidate when the rules were not sure. ``fresh_link``: ``sid``
    never had a link record."""
    if body is not None:
        write_golden(tx, Golden(new, (sid,)), {sid: body}, fresh=True,
                     features=None if features is None else {sid: features})
    review = decision.outcome is Outcome.REVIEW and decision.candidate is not None
    _write_link(tx, sid, new, _decision_ext(tx, golden=new, rule=str(decision.rule), outcome=str(decision.outcome),
                                            source="auto", actor=AUTO_ACTOR, decision=decision, previous=previous,
                                            reasons=reasons), fresh_link)
    if review:
        _open_review(tx, sid, decision, reasons)
    audit(tx, "review" if review else "new", actor=AUTO_ACTOR, rule=str(decision.rule),
          outcome=str(decision.outcome), source=sid, golden=new, previous=previous,
          candidate=decision.candidate if review else None, decision=decision, reasons=reasons)


# -- stewardship ------------------------------------------------------------------------------


def _move(tx: Tx, sid: str, from_gid: str | None, to_gid: str) -> None:
    if from_gid is not None:
        old = golden_of(tx, from_gid)
        write_golden(tx, Golden(old.id, tuple(s for s in old.sources if s != sid), old.merged, old.replaced_by))
    target = golden_of(tx, to_gid)
    write_golden(tx, Golden(to_gid, (*(s for s in target.sources if s != sid), sid), target.merged))


def link(tx: Tx, sid: str, gid: str, actor: str) -> dict[str, Any]:
    """Link ``sid`` to golden ``gid`` by hand (accepts an open review of the pair); the golden
    record it leaves is recomputed, or deleted when it has no source left."""
    _source(tx, sid)
    _active_golden(tx, gid)
    old = current_golden(tx, sid)
    if old == gid:
        return {"golden": gid, "changed": False}
    _move(tx, sid, old, gid)
    _write_link(tx, sid, gid, _decision_ext(tx, golden=gid, rule="manual", outcome="auto-link", source="manual",
                                            actor=actor, previous=old))
    audit(tx, "link", actor=actor, rule="manual", outcome="auto-link", source=sid, golden=gid, previous=old)
    review = _body(tx, "Basic", review_id(sid, gid))
    if review is not None and decision_of(review)["state"] == POSSIBLE_MATCH:
        review["code"]["coding"][0]["code"] = MATCH
        review["extension"].append(_decision_ext(tx, golden=gid, rule="manual", outcome="accepted", source="manual",
                                                 actor=actor))
        _put_record(tx, review)
    return {"golden": gid, "previous": old, "changed": True}


def unlink(tx: Tx, sid: str, gid: str | None, actor: str) -> dict[str, Any]:
    """Take ``sid`` out of its golden record: back into the golden record it came from when a
    steward moved it (so link then unlink restores both records exactly), else into a new one.
    With ``gid`` naming a golden record ``sid`` is only under review with, the review is rejected."""
    _source(tx, sid)
    current = current_golden(tx, sid)
    if gid is not None and gid != current:
        review = _body(tx, "Basic", review_id(sid, gid))
        if review is None or decision_of(review)["state"] != POSSIBLE_MATCH:
            raise FhirError(409, error("conflict", f"Patient/{sid} is neither linked to nor under review with "
                                       f"Patient/{gid}"))
        review["code"]["coding"][0]["code"] = NO_MATCH
        review["extension"].append(_decision_ext(tx, golden=gid, rule="manual", outcome="rejected", source="manual",
                                                 actor=actor))
        _put_record(tx, review)
        audit(tx, "reject", actor=actor, rule="manual", outcome="rejected", source=sid, golden=current, candidate=gid)
        return {"golden": current, "rejected": gid, "changed": True}
    if current is None:
        raise FhirError(409, error("conflict", f"Patient/{sid} is not linked to a golden record"))
    record = link_record(tx, sid) or {}
    previous = decision_of(record).get("previous")
    target: str | None = None
    if previous and previous != current:
        body = _body(tx, "Patient", previous)
        prior = tx.current("Patient", previous)
        if body is None and prior is not None:  # emptied when the source left it: bring it back
            target = previous
        elif body is not None and is_golden(body) and Golden.of(previous, body).replaced_by is None:
            target = previous
    if target is None:
        target = new_id()
    _move(tx, sid, current, target)
    _write_link(tx, sid, target, _decision_ext(tx, golden=target, rule="manual", outcome="unlinked", source="manual",
                                               actor=actor, previous=current,
                                               reasons=(f"unlinked from Patient/{current}",)))
    audit(tx, "unlink", actor=actor, rule="manual", outcome="unlinked", source=sid, golden=target, previous=current,
          reasons=(f"unlinked from Patient/{current}",))
    return {"golden": target, "previous": current, "changed": True}


def merge(tx: Tx, from_gid: str, into_gid: str, actor: str, reasons: Sequence[str] = ()) -> dict[str, Any]:
    """Merge golden ``from_gid`` into ``into_gid``: its sources move, it becomes ``replaced-by``."""
    if from_gid == into_gid:
        raise FhirError(400, error("invalid", "a golden record cannot be merged into itself"))
    src, dst = _active_golden(tx, from_gid), _active_golden(tx, into_gid)
    write_golden(tx, Golden(into_gid, (*dst.sources, *src.sources), (*dst.merged, from_gid)))
    write_golden(tx, Golden(from_gid, (), src.merged, into_gid))
    for sid in src.sources:
        _write_link(tx, sid, into_gid, _decision_ext(tx, golden=into_gid, rule="merge", outcome="auto-link",
                                                     source="manual", actor=actor, previous=from_gid,
                                                     reasons=reasons))
    audit(tx, "merge", actor=actor, rule="merge", outcome="auto-link", golden=into_gid, previous=from_gid,
          sources=src.sources, reasons=reasons)
    return {"golden": into_gid, "moved": list(src.sources)}


def unmerge(tx: Tx, from_gid: str, actor: str) -> dict[str, Any]:
    """Undo :func:`merge` of ``from_gid``: the sources the merge moved go back, both records are
    recomputed as they were."""
    body = _body(tx, "Patient", from_gid)
    gone = Golden.of(from_gid, body)
    if body is None or not is_golden(body) or gone.replaced_by is None:
        raise FhirError(409, error("conflict", f"Patient/{from_gid} is not a merged golden record"))
    into = golden_of(tx, gone.replaced_by)
    back = []
    for sid in into.sources:
        d = decision_of(link_record(tx, sid) or {"code": {"coding": [{"code": ""}]}})
        if d.get("rule") == "merge" and d.get("previous") == from_gid and d.get("golden") == into.id:
            back.append(sid)
    write_golden(tx, Golden(from_gid, tuple(back), gone.merged))
    write_golden(tx, Golden(into.id, tuple(s for s in into.sources if s not in back),
                            tuple(m for m in into.merged if m != from_gid)))
    for sid in back:
        _write_link(tx, sid, from_gid, _decision_ext(tx, golden=from_gid, rule="unmerge", outcome="auto-link",
                                                     source="manual", actor=actor, previous=into.id))
    audit(tx, "unmerge", actor=actor, rule="unmerge", outcome="auto-link", golden=from_gid, previous=into.id,
          sources=back)
    return {"golden": from_gid, "moved": back}


def reviews(tx: Tx, count: int) -> list[dict[str, Any]]:
    """Open review items, oldest first (ids of records are not time-ordered: by their time).

    An item whose source or candidate golden record is deleted (a source deleted, a golden record
    retired with its last source) is left out but kept, so it is back when they are."""
    criteria = [Clause("code", "token", (TokenValue(LINK_STATE, POSSIBLE_MATCH),))]
    items: list[dict[str, Any]] = []
    after: str | None = None
    while len(items) < count:
        ids = tx.find("Basic", criteria, count, after)
        for rid in ids:
            b = _body(tx, "Basic", rid)
            if b is not None and _live(tx, _ref_id(b.get("subject"))) and _live(tx, str(b["identifier"][0]["value"])):
                items.append(b)
        if len(ids) < count:
            break
        after = ids[-1]
    return sorted(items[:count], key=lambda b: str(decision_of(b).get("time", "")))


def _live(tx: Tx, pid: str | None) -> bool:
    v = None if pid is None else tx.current("Patient", pid)
    return v is not None and v.body is not None


def explain(tx: Tx, rid: str) -> dict[str, Any]:
    """How ``Patient/rid`` came to be where it is: a source's link record and open reviews, or
    a golden record's sources with theirs."""
    body = _body(tx, "Patient", rid)
    if body is None:
        gone = link_record(tx, rid)  # a deleted source: where it was, and where it goes back to
        if gone is not None:
            return {"source": rid, "link": decision_of(gone), "reviews": []}
        raise FhirError(404, error("not-found", f"Patient/{rid} does not exist"))
    if is_golden(body):
        golden = Golden.of(rid, body)
        return {"golden": rid, "replaced_by": golden.replaced_by, "merged": list(golden.merged),
                "sources": {sid: decision_of(r) for sid in golden.sources if (r := link_record(tx, sid))}}
    record = link_record(tx, rid)
    open_reviews = [decision_of(b) for i in tx.find("Basic", _open_reviews_of(rid), 50) if (b := _body(tx, "Basic", i))]
    return {"source": rid, "link": decision_of(record) if record else None, "reviews": open_reviews}


# -- $match -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    golden: str
    score: float
    grade: str
    decision: Decision


def grade_of(decision: Decision) -> str:
    """The match-grade code (http://hl7.org/fhir/StructureDefinition/match-grade)."""
    if decision.outcome is Outcome.AUTO_LINK:
        return "certain"
    if decision.outcome is Outcome.REVIEW:
        return "probable"
    return "possible" if decision.score > 0 else "certainly-not"


def search_score(decision: Decision, config: MatchConfig) -> float:
    """``search.score`` in [0, 1]: 1 for a deterministic link, else the score over the link
    threshold, capped."""
    if decision.outcome is Outcome.AUTO_LINK and decision.rule is not Rule.PROBABILISTIC:
        return 1.0
    return round(min(1.0, max(0.0, decision.score / config.link_threshold)), 4)


def candidates(tx: Tx, patient: dict[str, Any], config: MatchConfig = SERVER_CONFIG) -> list[Scored]:
    """Every golden record sharing a blocking key with ``patient``, scored, best first."""
    incoming = extract(patient)
    found = TxCandidates(tx).lookup(blocking.keys(incoming), config.max_block)
    out = []
    for gid in sorted(found.ids):
        d = decide(incoming, _features(tx, gid), config, gid)
        out.append(Scored(gid, search_score(d, config), grade_of(d), d))
    rank = {"certain": 3, "probable": 2, "possible": 1, "certainly-not": 0}
    return sorted(out, key=lambda s: (rank[s.grade], s.score, s.decision.score), reverse=True)
