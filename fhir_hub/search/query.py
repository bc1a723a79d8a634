"""The backend-neutral search query: what a FHIR query string means, with no storage in sight.

``search/parse.py`` turns ``Observation?subject=Patient/1&code=http://loinc.org|1234-5&date=ge2024``
into a :class:`Query`; the in-memory matcher (``search/matcher.py``) evaluates it over resources
and each backend compiles it to its own query language (``storage/sqlite/search.py``). Both read
the same index values (``search/extract.py``), so they agree by construction and a differential
test keeps them honest.

Every value is parsed and normalised once, here, so matchers compare plain numbers and strings:

* dates are inclusive µs ranges (``search/dates.py``), a value standing for its whole precision;
* numbers and quantities carry the inclusive range their significant digits imply
  (``100`` → ``[99.5, 100.5]``), so ``eq`` is a range test like dates;
* strings are normalised (:func:`fhir_hub.search.text.normalise`) unless ``:exact``.

A query is an AND of :class:`Clause`; a clause is one query parameter, an OR of its values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Comparison prefixes of number, date and quantity values (search.html#prefix).
Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


@dataclass(frozen=True, slots=True)
class StringValue:
    #: Normalised text; with ``:exact`` the text as given.
    text: str


@dataclass(frozen=True, slots=True)
class TokenValue:
    #: ``None``: any system (``code``); ``""``: no system (``|code``).
    system: str | None
    #: ``None``: any code of the system (``system|``).
    code: str | None


@dataclass(frozen=True, slots=True)
class OfTypeValue:
    """``identifier:of-type=type-system|type-code|value``."""

    type_system: str
    type_code: str
    value: str


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: Prefix
    #: Inclusive µs range of the value at its precision.
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberValue:
    prefix: Prefix
    #: The value as written and the inclusive range of its significant digits.
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    prefix: Prefix
    value: float
    low: float
    high: float
    #: ``None``: any system; with a UCUM system the value is canonical (see ``search/ucum.py``).
    system: str | None
    #: ``None``: any unit. Matches ``Quantity.code``, or ``Quantity.unit`` when the system is absent.
    code: str | None
    #: The value was converted to its canonical UCUM unit: it compares with the ``param:canonical``
    #: rows, where every convertible UCUM quantity is indexed in canonical units too.
    canonical: bool = False


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    #: ``"Type/id"`` for a local reference, else the absolute URL as given.
    target: str
    #: Set when the value or the ``:[type]`` modifier names only an id: any of these types matches.
    types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@dataclass(frozen=True, slots=True)
class CompositeValue:
    #: One value per component, in the SearchParameter's component order.
    parts: tuple[Value, ...]


Value = (StringValue | TokenValue | OfTypeValue | DateValue | NumberValue | QuantityValue | ReferenceValue
         | UriValue | CompositeValue)


@dataclass(frozen=True, slots=True)
class Clause:
    """One parameter of the query: resources where any of ``values`` matches ``param``.

    ``param`` is the SearchParameter's code (``name``, ``subject``, ``_lastUpdated``); ``type`` its
    type. ``modifier`` is the one after ``:`` (``exact``, ``contains``, ``text``, ``not``,
    ``of-type``, ``identifier``, ``above``, ``below``, ``missing``), or ``None``; a ``:[type]``
    modifier on a reference is folded into :attr:`ReferenceValue.types`.

    * ``missing``: ``values`` is empty and :attr:`missing` says which way.
    * ``not`` (token): resources with no value matching any of ``values`` (including none at all).
    * ``text`` (token): ``values`` are :class:`StringValue`, matched against the code's text,
      ``Coding.display`` and ``Identifier.type.text``, like a string search.
    * ``identifier`` (reference): ``values`` are :class:`TokenValue`, matched against
      ``Reference.identifier``.
    """

    param: str
    type: str
    values: tuple[Value, ...]
    modifier: str | None = None
    missing: bool | None = None


@dataclass(frozen=True, slots=True)
class Chain:
    """``subject:Patient.name=x``: resources whose ``param`` references a ``target_type`` resource
    matching ``clause`` (which may itself be a :class:`Chain`, for several levels)."""

    param: str
    target_type: str
    clause: Criterion


@dataclass(frozen=True, slots=True)
class Has:
    """``_has:Observation:patient:code=x``: resources that some ``source_type`` resource points
    at through its ``param`` while matching ``clause`` (which may be a nested :class:`Has`)."""

    source_type: str
    param: str
    clause: Criterion


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Resources matching at least one of ``criteria``: compartment membership, which holds
    through any of a type's membership parameters (``subject`` or ``performer``...)."""

    criteria: tuple[Clause | Chain | Has, ...]


Criterion = Clause | Chain | Has | AnyOf


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Observation:subject:Patient`` (forward) or ``_revinclude=...`` (reverse)."""

    source_type: str
    #: ``"*"`` for every reference parameter of the source type.
    param: str
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search: criteria (AND) over one resource type, or several with ``_type``."""

    types: tuple[str, ...]
    #: The criteria of a one-type search; with several types see :attr:`per_type`.
    criteria: tuple[Criterion, ...] = ()
    #: ``(type, criteria)`` for each type of a ``_type`` search: a common parameter's expression
    #: differs by type, so each type has its own parsed criteria.
    per_type: tuple[tuple[str, tuple[Criterion, ...]], ...] = ()
    #: ``_id`` values (OR), kept apart: every backend answers them from its primary key.
    ids: tuple[str, ...] | None = None
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    includes: tuple[Include, ...] = ()
    total: Literal["none", "estimate", "accurate"] | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    #: Parameters understood but not used for matching, kept for the self link (``_format``...).
    passthrough: tuple[tuple[str, str], ...] = ()
    #: Parameters ignored under lenient handling (search.html#errors), left out of the self link.
    ignored: tuple[str, ...] = ()
    #: Compartment restriction: ``("Patient", "123")`` for ``Patient/123/Observation?...``.
    compartment: tuple[str, str] | None = None
    #: Further owners whose compartments count as the compartment's (a golden Patient's linked
    #: sources, with patient reconciliation on: ``fhir_hub/mpi/expand.py``).
    compartment_also: tuple[str, ...] = ()
    #: Opaque keyset position of a ``next`` link.
    cursor: str | None = None

    def criteria_for(self, rtype: str) -> tuple[Criterion, ...]:
        for t, criteria in self.per_type:
            if t == rtype:
                return criteria
        return self.criteria
