# The operator image (kanaria/operator), where a Docker engine exists. Without one, `make image`
# (hack/build-image.sh: mmdebstrap + umoci) builds the same image as an OCI archive; this file
# follows it: Debian bookworm with Debian's python3 (3.11), a venv at /opt/kanaria holding the
# operator wheel and its dependencies from PyPI, user 65532, entrypoint kanaria-operator, byte
# code compiled at build time (nothing is written at run time: a read-only root works).
# It carries the operator distribution alone (api, rollout, analysis, traffic, workloads,
# controller, cli; see pyproject.toml): the sandbox, the benchmarks, the reference model server
# and the model-server library (kanaria-monitor) are not in the wheel, so not in the image.
FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*

FROM base AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/kanaria ./operator/kanaria
RUN python3 -m venv /opt/kanaria \
    && /opt/kanaria/bin/pip wheel -q --no-cache-dir --no-deps -w /wheels . \
    && /opt/kanaria/bin/pip install -q --no-cache-dir /wheels/*.whl \
    && /opt/kanaria/bin/pip uninstall -q -y pip

FROM base
COPY --from=build /opt/kanaria /opt/kanaria
RUN echo "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \
    && echo "nonroot:x:65532:" >> /etc/group
ENV PATH=/opt/kanaria/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["kanaria-operator"]
