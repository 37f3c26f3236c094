# bench in a container: by default an agent (`bench agent`, configured from the environment: see
# deploy/entrypoint.sh); given arguments, that bench command (`bench run ...` for a coordinator).
#
#   docker build -t bench:0.1.0 .
#
# Reproducible: an exact Python release on Debian 12, the Python packages pinned by constraints.txt,
# Kafka's jars fetched at build time by the pinned pom (bench/broker/pom.xml), so a container never
# needs the network to start. For a byte-identical base, append the digest that
# `docker buildx imagetools inspect python:3.11.15-slim-bookworm` prints (@sha256:...).
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# --- bench and its Python packages, in a virtualenv copied whole into the image -------------------
FROM ${PYTHON_IMAGE} AS python-env
# PIP_CONSTRAINT, unlike -c, also reaches pip's isolated build of bench (its setuptools).
ENV PIP_CONSTRAINT=/opt/bench/constraints.txt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/bench
COPY pyproject.toml constraints.txt README.md ./
COPY bench ./bench
COPY workloads ./workloads
# Editable, as the README installs it: bench finds its workloads/ beside its package.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -e . \
 && /opt/venv/bin/python -m compileall -q bench

# --- Kafka's jars, fetched by bench itself (`bench broker install`) with Maven -------------------
FROM python-env AS kafka-jars
# Debian's own builds; their versions move with security updates, which is wanted here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends maven openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
ENV BENCH_CACHE_DIR=/opt/bench-cache
RUN /opt/venv/bin/bench broker install

# --- the image: a JRE (the embedded broker and Kafka's CLI tools), tini, a user without privileges --
FROM ${PYTHON_IMAGE}
# tini as PID 1 reaps every exited process and passes signals on: the agent's service instances
# are its children, and faults kill and pause them (docs/beyond-one-machine.md).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 bench \
 && useradd --uid 10001 --gid bench --create-home --shell /usr/sbin/nologin bench \
 && install -d -o bench -g bench /results
COPY --from=python-env /opt/venv /opt/venv
COPY --from=python-env /opt/bench /opt/bench
COPY --from=kafka-jars --chown=bench:bench /opt/bench-cache /opt/bench-cache
COPY deploy/entrypoint.sh deploy/wait_for_agents.py /opt/bench/deploy/
# A run's default output (results/ under the working directory) lands on the /results volume.
RUN ln -s /results /opt/bench/results
ENV PATH=/opt/venv/bin:$PATH \
    BENCH_CACHE_DIR=/opt/bench-cache \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/bench
USER 10001:10001
EXPOSE 7070
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/bench/deploy/entrypoint.sh"]
