# magerl images. Two final targets from one build:
#   docker build --target cpu     -t magerl:0.1.0 .          # workers and the evaluator
#   docker build --target learner -t magerl-learner:0.1.0 .  # the learner, CUDA-capable
# Non-root (uid 10001), no compilers in the final stages, read-only root file system ready
# (writable paths are /tmp and the mounted volumes).
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build-cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/magerl
COPY pyproject.toml README.md /src/
COPY magerl /src/magerl
RUN /opt/magerl/bin/pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && /opt/magerl/bin/pip install /src

FROM python:${PYTHON}-slim AS build-cuda
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/magerl
COPY pyproject.toml README.md /src/
COPY magerl /src/magerl
# PyPI's Linux torch wheel is the CUDA build and brings its CUDA runtime; nodes need only the driver.
RUN /opt/magerl/bin/pip install "torch==2.13.0" \
 && /opt/magerl/bin/pip install /src

FROM python:${PYTHON}-slim AS runtime
RUN groupadd --gid 10001 magerl && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home magerl
ENV PATH=/opt/magerl/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp \
    METRICS_PORT=9090 PROMETHEUS_MULTIPROC_DIR=/tmp/metrics MAGERL_CACHE_DIR=/tmp/cache
EXPOSE 9090
USER 10001:10001
ENTRYPOINT ["magerl"]

FROM runtime AS cpu
COPY --from=build-cpu /opt/magerl /opt/magerl
CMD ["worker"]

FROM runtime AS learner
COPY --from=build-cuda /opt/magerl /opt/magerl
EXPOSE 5555 5556
CMD ["learner", "--checkpoint-dir", "/checkpoints"]
