"""What Airflow loads as a plugin: the operators the Amazon provider lacks (endpoint teardown) and
endpoint invocation for smoke tests."""
