"""Terminology: the Vietnamese code lists as CodeSystems and ConceptMaps, and the operations on them.

The resources are built from ``../shared/vn/code-lists`` by ``tools/build_terminology.py`` into
``data/`` and loaded on first use (:mod:`.catalogue`); :mod:`.operations` answers ``$lookup``,
``$validate-code`` and ``$translate`` without any HTTP in the way.
"""

from fhir_hub.terminology.catalogue import code_system, concept_map
from fhir_hub.terminology.operations import (
           Match,
           UnknownSystem,
           designations,
           lookup,
           translate,
           validate_code,
)

__all__ = ["Match", "UnknownSystem", "code_system", "concept_map", "designations", "lookup", "translate",
           "validate_code"]
