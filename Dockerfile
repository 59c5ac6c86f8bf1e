# agentwatch: one image for every component (collector, worker, sinks, gateway, alerts);
# the container's command picks the component, e.g. `agentwatch worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AGENTWATCH_STACK__DIR=/var/lib/agentwatch

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY producers ./producers
COPY processors ./processors
COPY consumers ./consumers
COPY avro ./avro
COPY deploy/clickhouse ./deploy/clickhouse
# Editable on purpose: the Avro schemas (avro/) and the ClickHouse migrations (deploy/clickhouse/)
# are read from the checkout next to the package (pipeline.settings.REPO_ROOT), not from
# site-packages, so the install must keep pointing at /app.
RUN pip install -e . \
 && useradd --system --uid 10001 --home-dir /var/lib/agentwatch agentwatch \
 && mkdir -p /var/lib/agentwatch \
 && chown agentwatch /var/lib/agentwatch

USER agentwatch
VOLUME ["/var/lib/agentwatch"]
# collector 4318, gateway 8080, worker 6066, clickhouse sink 9101, archive sink 9102, alerts 9103
EXPOSE 4318 8080 6066 9101 9102 9103
ENTRYPOINT ["agentwatch"]
CMD ["--help"]
