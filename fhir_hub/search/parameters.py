"""The SearchParameter registry: which parameters a resource type has, core and custom.

The 1,375 R4 core parameters come from :func:`fhir_hub.definitions.search_parameters`; a custom
SearchParameter resource (R4 JSON) joins them at run time with :func:`register`, and wins over a
core parameter with the same code on the same type. Anything derived from the registry (the
compiled extraction plans of ``search/extract.py``) subscribes with :func:`on_change`, so a
registration is seen by the next write instead of a restart.

Common parameters have the abstract bases ``Resource`` (every type) or ``DomainResource`` (every
type but ``Bundle``, ``Binary`` and ``Parameters``, the three that R4 derives from ``Resource``
directly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_hub import definitions

__all__ = ["SearchParam", "adopt", "builtin", "by_url", "from_resource", "lookup", "on_change", "params_for", "refresh",
           "register", "state", "unregister"]

#: The R4 resource types that are not DomainResources.
NOT_DOMAIN_RESOURCES = frozenset({"Bundle", "Binary", "Parameters"})

TYPES = frozenset({"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"})


@dataclass(frozen=True, slots=True)
class SearchParam:
    code: str
    #: ``number`` | ``date`` | ``string`` | ``token`` | ``reference`` | ``composite`` | ``quantity``
    #: | ``uri`` | ``special``.
    type: str
    url: str
    base: tuple[str, ...]
    #: The FHIRPath expression; ``""`` for the parameters that have none (``_text``, ``_query``...).
    expression: str
    #: Resource types a reference parameter may point at.
    targets: tuple[str, ...] = ()
    #: ``(definition url, expression)`` per component of a composite parameter, in order.
    components: tuple[tuple[str, str], ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()

    def applies_to(self, rtype: str) -> bool:
        return (rtype in self.base or "Resource" in self.base
                or ("DomainResource" in self.base and rtype not in NOT_DOMAIN_RESOURCES))


def _from_json(sp: dict[str, Any]) -> SearchParam:
    return SearchParam(
        code=sp["code"],
        type=sp["type"],
        url=sp["url"],
        base=tuple(sp["base"]),
        expression=sp.get("expression") or "",
        targets=tuple(sp.get("target") or ()),
        components=tuple((c.get("definition", ""), c.get("expression", "")) for c in sp.get("component") or ()),
        modifiers=tuple(sp.get("modifier") or ()),
        comparators=tuple(sp.get("comparator") or ()),
    )


@cache
def _core() -> dict[str, SearchParam]:
    return {sp["url"]: _from_json(sp) for sp in definitions.search_parameters()}


_custom: dict[str, SearchParam] = {}
_listeners: list[Callable[[], None]] = []
_generation = 0


@cache
def params_for(rtype: str) -> dict[str, SearchParam]:
    """``{code: parameter}`` for every parameter of ``rtype``, the common ones included.

    The dict is shared and cached until the registry changes: treat it as read-only.
    """
    found = {p.code: p for p in _core().values() if p.applies_to(rtype)}
    found.update({p.code: p for p in _custom.values() if p.applies_to(rtype)})
    return found


def lookup(rtype: str, code: str) -> SearchParam | None:
    return params_for(rtype).get(code)


def by_url(url: str) -> SearchParam | None:
    """The parameter with this canonical URL (a ``|version`` suffix is ignored)."""
    url = url.split("|", 1)[0]
    return _custom.get(url) or _core().get(url)


def builtin(url: str) -> SearchParam | None:
    """The R4 core parameter with this canonical URL, whatever is registered over it."""
    return _core().get(url.split("|", 1)[0])


def from_resource(resource: dict[str, Any]) -> SearchParam:
    """The parameter a SearchParameter resource (R4 JSON) defines, without registering it.

    Raises ``ValueError`` when the resource lacks what a search needs (url, code, base, type).
    """
    if resource.get("resourceType") != "SearchParameter":
        raise ValueError("not a SearchParameter resource")
    problems = [name for name in ("url", "code", "type") if not isinstance(resource.get(name), str)]
    base = resource.get("base")
    if not isinstance(base, list) or not base or not all(isinstance(b, str) for b in base):
        problems.append("base")
    if problems:
        raise ValueError("SearchParameter without " + ", ".join(problems))
    if resource["type"] not in TYPES:
        raise ValueError(f"SearchParameter type {resource['type']!r} is not an R4 search type")
    return _from_json(resource)


def register(resource: dict[str, Any]) -> SearchParam:
    """Make a SearchParameter resource (R4 JSON) known; replaces an earlier one with its URL.

    Raises ``ValueError`` as :func:`from_resource` does.
    """
    global _custom
    param = from_resource(resource)
    # a new dict rather than a change in place: the writer thread may be iterating the old one
    _custom = {**_custom, param.url: param}
    _changed()
    return param


def unregister(url: str) -> bool:
    """Forget a custom parameter (a core parameter it shadowed comes back); ``False`` if unknown."""
    global _custom
    url = url.split("|", 1)[0]
    if url not in _custom:
        return False
    _custom = {u: p for u, p in _custom.items() if u != url}
    _changed()
    return True


def state() -> tuple[int, dict[str, SearchParam]]:
    """The registry's generation (one more at every change) and its custom parameters: what a
    parser process (``rest/parsers.py``) needs to index as this process does."""
    return _generation, _custom


def adopt(custom: dict[str, SearchParam]) -> None:
    """Take another process's custom parameters as this registry's (see :func:`state`)."""
    global _custom
    _custom = dict(custom)
    _changed()


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every registry change (to drop what was derived from it)."""
    _listeners.append(listener)


def refresh() -> None:
    """Drop what was derived from the registry, as after a change.

    For a thread other than the one that changed the registry: something it derived while the
    change happened may have been cached from the old parameters (``fhir_hub/rest/search_parameters.py``
    calls it on the store's writer after each change).
    """
    _changed()


def _changed() -> None:
    global _generation
    _generation += 1
    params_for.cache_clear()
    for listener in _listeners:
        listener()
