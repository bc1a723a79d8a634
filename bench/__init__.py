"""Benchmarks of fhir-hub against floors measured in the same run (see bench/README.md)."""
