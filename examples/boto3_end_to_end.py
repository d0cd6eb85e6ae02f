"""Plain boto3, as AWS's documentation writes it, against the local SageMaker (`make emulator`).

    .venv/bin/python examples/boto3_end_to_end.py [--endpoint-url http://127.0.0.1:4566]

Creates a training job from a sourcedir tarball and an S3 channel; reads its metrics, its log and
its model.tar.gz; shows a failing script's own error in FailureReason; hosts the model on an
endpoint with code/inference.py; invokes it; gets a ModelError from a handler exception; deletes
everything. Point it at real AWS (no --endpoint-url, a real role and bucket) and it runs there too.
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile
import textwrap
import time

import boto3

TRAIN_PY = textwrap.dedent(
    """
    import argparse, json, os, shutil
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if args.scale <= 0:
        raise ValueError(f"scale must be positive, got {args.scale}")
    rows = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "numbers.csv")).read().split()
    mean = sum(float(r) for r in rows) / len(rows) * args.scale
    print(f"rows={len(rows)} mean={mean:.4f}", flush=True)
    model_dir = os.environ["SM_MODEL_DIR"]
    json.dump({"mean": mean}, open(os.path.join(model_dir, "model.json"), "w"))
    shutil.copytree(os.path.join(os.path.dirname(__file__), "serving"), os.path.join(model_dir, "code"))
    """
)
INFERENCE_PY = textwrap.dedent(
    """
    import json, os
    def model_fn(model_dir):
        return json.load(open(os.path.join(model_dir, "model.json")))
    def input_fn(body, content_type):
        values = json.loads(body)["values"]
        if any(v < 0 for v in values):
            raise ValueError("negative values are not allowed")
        return values
    def predict_fn(values, model):
        return [v - model["mean"] for v in values]
    def output_fn(prediction, accept):
        return json.dumps({"centered": prediction})
    """
)
IMAGE = "763104351884.dkr.ecr.{region}.amazonaws.com/pytorch-{scope}:2.5.1-cpu-py311-ubuntu22.04-sagemaker"


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wait(describe, key: str, done: set[str], timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = describe()
        if result[key] in done or time.monotonic() > deadline:
            return result
        time.sleep(2)


def run(endpoint_url: str | None, region: str, bucket: str, role_arn: str, suffix: str = "") -> dict:
    session = boto3.session.Session(region_name=region)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    sm = session.client("sagemaker", endpoint_url=endpoint_url)
    runtime = session.client("sagemaker-runtime", endpoint_url=endpoint_url)
    logs = session.client("logs", endpoint_url=endpoint_url)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="example/source/sourcedir.tar.gz",
                  Body=tarball({"train.py": TRAIN_PY, "serving/inference.py": INFERENCE_PY}))
    s3.put_object(Bucket=bucket, Key="example/data/numbers.csv", Body=b"1\n2\n3\n6\n")

    def training_job(name: str, scale: float) -> dict:
        sm.create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={
                "TrainingImage": IMAGE.format(region=region, scope="training"),
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "mean", "Regex": r"mean=([0-9.\-]+)"}],
            },
            RoleArn=role_arn,
            HyperParameters={
                "scale": str(scale),
                "sagemaker_program": json.dumps("train.py"),
                "sagemaker_submit_directory": json.dumps(f"s3://{bucket}/example/source/sourcedir.tar.gz"),
            },
            InputDataConfig=[{
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/example/data",
                                                "S3DataDistributionType": "FullyReplicated"}},
            }],
            OutputDataConfig={"S3OutputPath": f"s3://{bucket}/example/output"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        return wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus",
                    {"Completed", "Failed", "Stopped"})

    report: dict = {}
    job = training_job(f"example-train{suffix}", 2.0)
    report["status"] = job["TrainingJobStatus"]
    report["metrics"] = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                       logStreamNamePrefix=job["TrainingJobName"] + "/")["logStreams"][0]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"],
                                 startFromHead=True)["events"]
    report["log_has_metric_line"] = any("mean=" in e["message"] for e in events)
    model_uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    artifact = s3.get_object(Bucket=bucket, Key=model_uri.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(artifact)) as archive:
        report["model_files"] = sorted(archive.getnames())

    failed = training_job(f"example-fail{suffix}", -1.0)
    report["failure_reason"] = failed.get("FailureReason", "")

    model, config, endpoint = (f"example-model{suffix}", f"example-config{suffix}", f"example-endpoint{suffix}")
    sm.create_model(ModelName=model, ExecutionRoleArn=role_arn, PrimaryContainer={
        "Image": IMAGE.format(region=region, scope="inference"), "ModelDataUrl": model_uri,
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    report["endpoint_status"] = wait(lambda: sm.describe_endpoint(EndpointName=endpoint), "EndpointStatus",
                                     {"InService", "Failed"})["EndpointStatus"]
    try:
        answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                         Body=json.dumps({"values": [3, 4]}))
        report["prediction"] = json.loads(answer["Body"].read())
        try:
            runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                    Body=json.dumps({"values": [-1]}))
        except runtime.exceptions.ModelError as error:
            report["model_error"] = error.response["Error"]["Message"]
    finally:
        sm.delete_endpoint(EndpointName=endpoint)
        sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
        sm.delete_endpoint_config(EndpointConfigName=config)
        sm.delete_model(ModelName=model)
    report["endpoints_left"] = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == endpoint]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", default="http://127.0.0.1:4566", help="'' for real AWS")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bucket", default="example-sagemaker-bucket")
    parser.add_argument("--role-arn", default="arn:aws:iam::123456789012:role/SageMakerExecutionRole")
    args = parser.parse_args()
    print(json.dumps(run(args.endpoint_url or None, args.region, args.bucket, args.role_arn), indent=2))


if __name__ == "__main__":
    main()
