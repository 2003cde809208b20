# One image for the operator, runners, gateways and reconcile jobs:
#   onceflow operator --all-namespaces | onceflow runner --plan ... | onceflow gateway --plan ...
# Not built on the project's own machines (they have no Docker engine); hack/kind-e2e.sh builds it.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY runners ./runners
RUN python -m venv /opt/onceflow \
 && /opt/onceflow/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/onceflow/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="onceflow" \
      org.opencontainers.image.description="Onceflow operator, runner and webhook gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/onceflow /opt/onceflow
ENV PATH=/opt/onceflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The numeric user the pod security contexts expect (restricted profile: runAsNonRoot).
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["onceflow"]
CMD ["--help"]
