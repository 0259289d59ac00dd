# The Airflow image for docker-compose.yaml: the official Airflow 3.3 image plus this project's pinned
# runtime dependencies and code. Build: `docker compose build` (or `docker build -t NAME .`).
# Keep the tag equal to the apache-airflow pin in requirements.txt (tests/test_compose.py checks it).
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2
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

# Runtime dependencies only: requirements.txt up to its "# tests and checks" section (pytest, ruff,
# squawk and the browser test tooling stay out of the image). apache-airflow is pinned to the image's
# own version so pip can never move it.
COPY --chown=airflow:0 requirements.txt /opt/airflow/project/requirements.txt
RUN sed '/^# tests and checks/,$d' /opt/airflow/project/requirements.txt > /tmp/requirements-runtime.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements-runtime.txt \
    && rm /tmp/requirements-runtime.txt

# The project (docker-compose.yaml bind-mounts the same folders read-only over these for quick edits;
# drop those mounts when the image is pushed to a registry and run on several hosts).
COPY --chown=airflow:0 migration_engine /opt/airflow/project/migration_engine
COPY --chown=airflow:0 include /opt/airflow/project/include
COPY --chown=airflow:0 dags /opt/airflow/project/dags
COPY --chown=airflow:0 plugins /opt/airflow/project/plugins
RUN mkdir -p /opt/airflow/project/gx && chmod -R g+rwX /opt/airflow/project

ENV PYTHONPATH=/opt/airflow/project \
    MIGRATION_CONFIG=/opt/airflow/project/include/migration.yaml \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/project/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/project/plugins \
    GX_ANALYTICS_ENABLED=false
