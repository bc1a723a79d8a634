"""fhir-hub: a FHIR R4 server and data-exchange hub for Vietnam's health sector."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
