"""The `fhir-hub` command line (typer + rich)."""
