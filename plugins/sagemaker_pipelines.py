"""The project's Airflow plugin: extra links from SageMaker tasks to their jobs and endpoints, and the
cron timetable the scheduled pipelines use.

Airflow imports every .py file of the plugins folder and registers its AirflowPlugin subclasses; the
package sagemaker_pipelines_plugin/ beside this file holds the operators the DAGs import and is left
out of that scan (.airflowignore), so its modules are imported once, under their package names.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from sagemaker_pipelines_plugin.links import ALL_LINKS
from sagemaker_pipelines_plugin.timetables import UpcomingCronTimetable


class SageMakerPipelinesPlugin(AirflowPlugin):
    """Links from each SageMaker task (the provider's operators and ours) to what it made, in the AWS
    console or on the local SageMaker; and UpcomingCronTimetable, which the scheduler must know to
    read a scheduled pipeline's serialized DAG."""

    name = "sagemaker_pipelines"
    operator_extra_links = [link() for link in ALL_LINKS]
    timetables = [UpcomingCronTimetable]
