from fhir_hub.cli.main import app

app()
