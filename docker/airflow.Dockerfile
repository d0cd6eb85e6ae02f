# The Airflow side: the official Airflow image plus requirements.txt (by default with the few extras
# of requirements-synthetic-data.txt, see REQUIREMENTS below) and the PostgreSQL drivers.
# No torch or other training libraries: training and serving run on SageMaker (or the local
# SageMaker, its own image: docker/emulator.Dockerfile). Built by docker-compose.yaml; a starting
# point for a self-hosted deployment too (docs/deploy.md).
#
# The official image's slim variant: Airflow core only. The regular apache/airflow:3.3.2-python3.11
# carries dozens of providers installed under Airflow's own constraints, and the versions
# constraints.txt pins (the ones the tests ran with) would break some of those providers' upper
# bounds; the image's docs advise slim for exactly this: install only what you need, at your versions.
FROM apache/airflow:slim-3.3.2-python3.11

# The official image installs Python packages as the airflow user (pip refuses root there).
# apache-airflow is named at the image's own version, as the image's docs advise: a requirement
# that conflicts with it then fails the build instead of quietly moving Airflow. pip check fails
# the build on a broken environment rather than leaving it to the first task.
#
# REQUIREMENTS: requirements-synthetic-data.txt is requirements.txt plus the few libraries that the
# local profile's data generators and two smoke tests use in Airflow's tasks (docker-compose.yaml
# runs the local profile); --build-arg REQUIREMENTS=requirements.txt leaves them out.
ARG REQUIREMENTS=requirements-synthetic-data.txt
USER airflow
COPY --chown=airflow:0 requirements.txt requirements-synthetic-data.txt constraints.txt docker/requirements-postgres.txt /opt/airflow/requirements/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements/${REQUIREMENTS} -r /opt/airflow/requirements/requirements-postgres.txt -c /opt/airflow/requirements/constraints.txt \
 && pip check

# The project, laid out as Airflow expects under AIRFLOW_HOME (/opt/airflow): include/ and
# training_src/ sit beside dags/ because the pipelines find workloads and sources from there.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 training_src/ /opt/airflow/training_src/
ENV PYTHONPATH=/opt/airflow:/opt/airflow/plugins
