# The operator image (kanaria/operator). Not built in CI here (no Docker engine on these machines).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && useradd --uid 65532 --no-create-home kanaria
USER 65532:65532
ENTRYPOINT ["kanaria-operator"]
