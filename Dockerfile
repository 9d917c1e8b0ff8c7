# The operator image (kanaria/operator). Not built in CI here (no Docker engine on these machines).
# It carries the operator distribution alone (api, rollout, analysis, traffic, workloads,
# controller, cli; see pyproject.toml): the sandbox, the benchmarks, the reference model server
# and the model-server library (kanaria-monitor) are not in the wheel, so not in the image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 65532 --no-create-home kanaria
USER 65532:65532
ENTRYPOINT ["kanaria-operator"]
