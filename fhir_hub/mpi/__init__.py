"""Patient reconciliation (master patient index): the pure matching core.

:mod:`.features` turns a Patient into what is compared, :mod:`.score` compares two of them field
by field (Fellegi–Sunter weights from :mod:`.config`), :mod:`.rules` applies the rules of issue 6
in order and explains the :class:`~.rules.Decision`, :mod:`.blocking` and :mod:`.index` find the
candidates worth comparing. Nothing here touches the store or the clock.
"""

from fhir_hub.mpi.config import DateWeights, MatchConfig, NameWeights, Weights
from fhir_hub.mpi.features import Features, extract
from fhir_hub.mpi.index import CandidateIndex, CandidateSource, Lookup
from fhir_hub.mpi.rules import Decision, Outcome, Rule, decide, match
from fhir_hub.mpi.score import Comparison, FieldAgreement, Level, compare

__all__ = ["CandidateIndex", "CandidateSource", "Comparison", "DateWeights", "Decision", "Features",
           "FieldAgreement", "Level", "Lookup", "MatchConfig", "NameWeights", "Outcome", "Rule", "Weights",
           "compare", "decide", "extract", "match"]
