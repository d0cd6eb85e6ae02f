"""The local SageMaker: one HTTP gateway on 127.0.0.1 that boto3, the Airflow provider and the
SageMaker SDK reach through ``endpoint_url``. Jobs and endpoints really run on this machine."""
