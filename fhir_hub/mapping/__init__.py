"""Legacy formats → FHIR R4 transaction bundles.

:mod:`.engine` applies declarative specs (``fhir_hub/mappings/<format>/*.yaml``: field → element
tables and code tables); :mod:`.functions` holds every named conversion a spec may call;
:mod:`.claims_xml` reads the Vietnamese claims envelope (QĐ 130 / 4750 / 3176) and makes one
bundle per visit.
"""

from fhir_hub.mapping.claims_xml import FileResult, HosoResult, map_file

__all__ = ["FileResult", "HosoResult", "map_file"]
