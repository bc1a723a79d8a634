# fhir-hub on the embedded SQLite store; data lives in the /data volume.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 fhirhub && mkdir /data && chown fhirhub /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_hub ./fhir_hub
RUN pip install --no-cache-dir . && rm -rf /app/fhir_hub
USER fhirhub
VOLUME ["/data"]
EXPOSE 8080
ENV FHIR_HUB_DB=/data/fhir-hub.db
CMD ["fhir-hub", "serve", "--host", "0.0.0.0", "--port", "8080"]
