# The Airflow image for docker-compose.yaml: the official Airflow 3.3 image (Python 3.11, the version
# the project supports) plus this project's wheel, installed with the pinned dependency tree.
# Build: `docker compose build` (or `docker build -t NAME .`).
# Keep the tag equal to the apache-airflow pin in requirements.txt (tests/test_compose.py checks it).
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11

# --- build the wheel (product modules, product SQL, DAG files, default config; no dev tooling) ---
FROM ${AIRFLOW_BASE_IMAGE} AS wheel
COPY --chown=airflow:0 pyproject.toml README.md /tmp/src/
COPY --chown=airflow:0 migration_engine /tmp/src/migration_engine
COPY --chown=airflow:0 include /tmp/src/include
COPY --chown=airflow:0 dags /tmp/src/dags
RUN pip wheel --no-cache-dir --no-deps -w /tmp/dist /tmp/src

# --- the runtime image -------------------------------------------------------------------------
FROM ${AIRFLOW_BASE_IMAGE}

# pg_dump / pg_restore / psql for the backup step. Debian's client follows the image's Debian release;
# pg_dump must be at least the server's major version: for newer servers build with e.g.
# --build-arg PG_CLIENT_PACKAGES="postgresql-client-17" after adding the PGDG apt repository.
ARG PG_CLIENT_PACKAGES="postgresql-client"
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends ${PG_CLIENT_PACKAGES} \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
USER airflow

# The wheel with the whole resolved tree pinned (constraints.txt); apache-airflow is pinned to the
# image's own version so pip can never move it; `pip check` fails the build on a broken tree.
# Test tools (pytest, ruff, squawk, playwright) are not dependencies of the wheel.
COPY --chown=airflow:0 constraints.txt /tmp/constraints.txt
COPY --from=wheel /tmp/dist /tmp/dist
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/dist/*.whl -c /tmp/constraints.txt \
    && pip check \
    && rm -rf /tmp/dist /tmp/constraints.txt \
    && ln -sfn "$(python -m migration_engine.paths dags)" /opt/airflow/migration-dags \
    && mkdir -p /opt/airflow/project/gx && chmod -R g+rwX /opt/airflow/project

# The DAGs are the installed package's (zdm-paths dags); the plugins register through the wheel's
# entry points; the migration config is the team's own, mounted by docker-compose.yaml (the shipped
# default is the seed's marketplace migration).
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/migration-dags \
    MIGRATION_STATE_DIR=/opt/airflow/project \
    GX_ANALYTICS_ENABLED=false
