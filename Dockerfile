# Orrery's worker image: the core install at the locked versions (requirements/prod.txt), run as a non-root user.
# No local embedding model (torch) is inside: set ORRERY_EMBEDDINGS_BASE_URL to an OpenAI-compatible endpoint.
#
#   docker build -t orrery .                      # from the repository root (deploy/compose.yaml does this)
#   docker run --rm --env-file deploy/.env orrery             # a worker: run.py worker
#   docker run --rm --env-file deploy/.env orrery migrate     # any other command: run.py <command>
#
# Wheels exist for every locked package on linux/amd64; elsewhere a package without a wheel needs a compiler here.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/orrery
COPY requirements/prod.txt /src/requirements/prod.txt
RUN /opt/orrery/bin/pip install --require-virtualenv -r /src/requirements/prod.txt
COPY pyproject.toml README.md run.py settings.py /src/
COPY core /src/core
COPY agents /src/agents
COPY jobs /src/jobs
COPY store /src/store
COPY prompts /src/prompts
COPY cli /src/cli
COPY clients /src/clients
# The dependencies are already in from the lock; setuptools (locked too) builds Orrery's own wheel offline.
RUN /opt/orrery/bin/pip install --require-virtualenv --no-deps --no-build-isolation /src

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/orrery orrery
COPY --from=build /opt/orrery /opt/orrery
# run.py alone: its imports resolve to the installed package, which the orrery user cannot modify.
COPY run.py /app/run.py
ENV PATH=/opt/orrery/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ORRERY_LOG_FORMAT=json \
    ORRERY_DATA_DIR=/home/orrery/data
WORKDIR /app
USER orrery
# SIGTERM is the worker's drain: stop claiming, let running jobs finish for ORRERY_SHUTDOWN_GRACE_S (default 30 s),
# hand the rest back. Give the container longer than that to stop (compose: stop_grace_period; docker stop -t).
STOPSIGNAL SIGTERM
# Healthy while every queue has a live worker (the health keys the workers refresh in Redis).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "/app/run.py", "health"]
# Exec form: Python is PID 1 and receives the signal itself.
ENTRYPOINT ["python", "/app/run.py"]
CMD ["worker"]
