"""Terminology: the Vietnamese code lists as CodeSystems, ValueSets and ConceptMaps, and the operations on them.

The resources are built from ``../shared/vn/code-lists`` by ``tools/build_terminology.py`` into
``data/`` and loaded on first use (:mod:`.catalogue`); :mod:`.operations` answers ``$lookup``,
``$validate-code``, ``$expand`` and ``$translate`` without any HTTP in the way.
"""

from fhir_hub.terminology.catalogue import code_system, concept_map, value_set
from fhir_hub.terminology.operations import (
           Details,
           Entry,
           Expansion,
           Match,
           UnknownSystem,
           UnsupportedCompose,
           designations,
           expand,
           lookup,
           lookup_details,
           translate,
           validate_code,
           validate_in_valueset,
)

__all__ = ["Details", "Entry", "Expansion", "Match", "UnknownSystem", "UnsupportedCompose", "code_system",
           "concept_map", "designations", "expand", "lookup", "lookup_details", "translate", "validate_code",
           "validate_in_valueset", "value_set"]
