"""What the DAGs import from the plugins folder: the operators the Amazon provider lacks (endpoint
teardown), rejoin-on-retry versions of its job operators, endpoint invocation for smoke tests, the
extra links and the timetable that plugins/sagemaker_pipelines.py registers with Airflow."""
