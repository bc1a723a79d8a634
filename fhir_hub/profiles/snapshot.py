"""Snapshot generation for StructureDefinitions derived by constraint (profiling.html#snapshot, simplified).

Shared by ``tools/build_profiles.py`` (the VN Core profiles, against the R4 base) and the outpatient
template build (:mod:`fhir_hub.profiles.build`, against the shipped VN Core snapshots). What it does:
the base snapshot is copied; each differential element, in order, is merged onto the element with
the same id (``min``, ``max``, ``type``, ``fixed[x]``, ``pattern[x]``, ``binding``, ``short``,
``definition``, ``mustSupport``, ``slicing``; ``constraint`` is appended with its ``source``). A slice
(``Patient.identifier:cccd``) is a copy of the unsliced element inserted after the last element of its
block. A child that is not in the snapshot yet (``Patient.identifier:cccd.system``) makes its parent
expand: the children of the unsliced element when the snapshot has them (backbone elements), else the
elements of the parent's datatype from ``types``. A constraint may only narrow the base (``min`` up,
``max`` down, types a subset): :class:`SnapshotError` otherwise.

The differential helpers (:func:`el`, :func:`slicing`, :func:`inv`, :func:`coding`) write the
element dicts both builders use.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

__all__ = ["SnapshotError", "TypeSource", "coding", "el", "inv", "slicing", "snapshot"]


class SnapshotError(ValueError):
    """A differential that cannot be applied to its base (unknown element, loosened constraint...)."""


class TypeSource(Protocol):
    """Where the elements of a datatype come from when a profile reaches inside one."""

    def type_elements(self, code: str) -> list[dict[str, Any]]: ...


def _path(eid: str) -> str:
    """``Patient.identifier:cccd.system`` -> ``Patient.identifier.system``."""
    return ".".join(seg.split(":", 1)[0] for seg in eid.split("."))


def el(eid: str, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": eid, "path": _path(eid)}
    last = eid.rsplit(".", 1)[-1]
    if ":" in last:
        out["sliceName"] = last.split(":", 1)[1]
    for key, value in props.items():
        out[key.rstrip("_")] = value
    return out


def slicing(*paths: str, rules: str = "open", kind: str = "value") -> dict[str, Any]:
    return {"discriminator": [{"type": kind, "path": p} for p in paths], "rules": rules, "ordered": False}


def inv(key: str, severity: str, human: str, expression: str) -> dict[str, Any]:
    return {"key": key, "severity": severity, "human": human, "expression": expression}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _index(snap: list[dict[str, Any]], eid: str) -> int | None:
    for i, e in enumerate(snap):
        if e["id"] == eid:
            return i
    return None


def _block_end(snap: list[dict[str, Any]], i: int) -> int:
    """Index after the element at ``i`` and everything under it (children and slices)."""
    eid = snap[i]["id"]
    j = i + 1
    while j < len(snap) and (snap[j]["id"].startswith(eid + ".") or snap[j]["id"].startswith(eid + ":")):
        j += 1
    return j


def _parent_id(eid: str) -> str:
    return eid.rsplit(".", 1)[0]


def _unsliced(eid: str) -> str:
    head, _, last = eid.rpartition(".")
    last = last.split(":", 1)[0]
    return f"{head}.{last}" if head else last


def _expand(snap: list[dict[str, Any]], base: TypeSource, eid: str) -> None:
    """Make the children of ``eid`` present in ``snap``."""
    i = _index(snap, eid)
    if i is None:
        if ":" in eid.rsplit(".", 1)[-1]:
            raise SnapshotError(f"slice {eid} is used before it is defined")
        _expand(snap, base, _parent_id(eid))
        i = _index(snap, eid)
        if i is None:
            raise SnapshotError(f"no element {eid} in the base")
    if i + 1 < len(snap) and snap[i + 1]["id"].startswith(eid + "."):
        return  # already expanded
    element = snap[i]
    src_id = _unsliced(eid)
    children: list[dict[str, Any]] = []
    if src_id != eid:
        j = _index(snap, src_id)
        assert j is not None
        end = _block_end(snap, j)
        children = [copy.deepcopy(e) for e in snap[j + 1:end] if e["id"].startswith(src_id + ".")]
        for c in children:
            c["id"] = eid + c["id"][len(src_id):]
    if not children:
        types = element.get("type", [])
        if len(types) != 1:
            raise SnapshotError(f"cannot expand {eid}: {len(types)} types")
        code = types[0]["code"]
        src = base.type_elements(code)
        prefix_path = element["path"]
        for c in src[1:]:
            c = copy.deepcopy(c)
            c["id"] = eid + c["id"][len(code):]
            c["path"] = prefix_path + c["path"][len(code):]
            children.append(c)
    snap[i + 1:i + 1] = children


_MERGED = ("short", "definition", "comment", "label", "min", "max", "type", "binding", "mustSupport", "slicing",
           "sliceName", "condition")


def _merge(target: dict[str, Any], diff: dict[str, Any], source: str) -> None:
    eid = diff["id"]
    if "min" in diff and diff["min"] < target.get("min", 0):
        raise SnapshotError(f"{eid}: min {diff['min']} below the base's {target.get('min')}")
    if "max" in diff and target.get("max", "*") != "*" and (diff["max"] == "*" or int(diff["max"]) > int(target["max"])):
        raise SnapshotError(f"{eid}: max {diff['max']} above the base's {target['max']}")
    if "type" in diff and target.get("type"):
        allowed = {t["code"] for t in target["type"]}
        if not {t["code"] for t in diff["type"]} <= allowed:
            raise SnapshotError(f"{eid}: types {diff['type']} not a subset of {sorted(allowed)}")
    for key, value in diff.items():
        if key in ("id", "path"):
            continue
        if key == "constraint":
            target["constraint"] = [*target.get("constraint", []), *[{**c, "source": source} for c in value]]
        elif key.startswith(("fixed", "pattern")) or key in _MERGED:
            target[key] = copy.deepcopy(value)
        else:
            raise SnapshotError(f"{eid}: unsupported differential key {key!r}")


def snapshot(sd: dict[str, Any], base_snapshot: list[dict[str, Any]], base: TypeSource) -> list[dict[str, Any]]:
    snap = copy.deepcopy(base_snapshot)
    for c in (c for e in snap for c in e.get("constraint", [])):
        c.setdefault("source", sd["baseDefinition"])  # R4's vital-signs profile leaves vs-1..3 without one
    for d in sd["differential"]["element"]:
        eid = d["id"]
        i = _index(snap, eid)
        if i is None and "sliceName" in d and ":" in eid.rsplit(".", 1)[-1]:
            src = _unsliced(eid)
            j = _index(snap, src)
            if j is None:
                _expand(snap, base, _parent_id(src))
                j = _index(snap, src)
            assert j is not None, eid
            if "slicing" not in snap[j]:
                raise SnapshotError(f"{eid}: {src} is not sliced")
            new = {k: copy.deepcopy(v) for k, v in snap[j].items() if k not in ("slicing",)}
            new["id"] = eid
            new["sliceName"] = d["sliceName"]
            new["min"] = 0  # a slice's own minimum starts at 0, whatever the sliced element's
            end = _block_end(snap, j)
            snap.insert(end, new)
            i = end
        elif i is None:
            _expand(snap, base, _parent_id(eid))
            i = _index(snap, eid)
            if i is None:
                raise SnapshotError(f"{sd['url']}: no element {eid}")
        _merge(snap[i], d, sd["url"])
    return snap
