"""train.py as SageMaker runs it: a subprocess with SM_* variables and --flags (the local profile's), and
as a real training job on the local SageMaker, where corrupt sessions must fail it with a reason that names them."""
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.datasets import brain_to_text as generator
from include.pipelines.config import load_workload
from tests.source_modules import with_shared_modules
from tests.conftest import TEST_BUCKET
from tests.unit.test_brain_to_text_dataset import SOURCE_DIR, import_source

HELD_OUT = "t15.2025.01.20"  # the local profile's transform.input session


def profile_flags(profile: str = "local", **overrides) -> list[str]:
    """The workload YAML's hyperparameters for a profile, as SageMaker passes them (--name value, all strings)."""
    from include.pipelines.requests import hyperparameter_value

    values = {**load_workload("brain_to_text", profile).training.hyperparameters, **overrides}
    return [item for name, value in values.items() for item in (f"--{name}", hyperparameter_value(value))]


@pytest.fixture(scope="module")
def train_module():
    return import_source("train")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    kwargs = load_workload("brain_to_text", "local").data.generator_kwargs
    return generator.generate(tmp_path_factory.mktemp("b2t"), **kwargs)


def run_training(job_dir: Path, train_dir: Path, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run train.py the way the toolkit does: SM_* paths, SAGEMAKER_BASE_DIR, flags as strings."""
    environment = {
        "PATH": "/usr/bin:/bin",
        "SM_CHANNEL_TRAIN": str(train_dir),
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "SAGEMAKER_BASE_DIR": str(job_dir),
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    return subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=with_shared_modules(environment),
                          capture_output=True, text=True, timeout=600)


def metric_definitions() -> list:
    """SageMaker's MetricDefinitions of the job: the workload YAML's, the one place they are written."""
    return load_workload("brain_to_text", "local").training.metric_definitions


def metric_values(log: str) -> dict[str, list[float]]:
    """What SageMaker's MetricDefinitions (the workload YAML's) extract from the log, line by line."""
    values = {}
    for line in log.splitlines():
        for definition in metric_definitions():
            match = re.search(definition.regex, line)
            if match:
                values.setdefault(definition.name, []).append(float(match.group(1)))
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    job_dir = tmp_path_factory.mktemp("job")
    result = run_training(job_dir, data_dir, *profile_flags())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_dir, result.stdout


@pytest.mark.slow
def test_log_lines_carry_the_metrics_the_definitions_read(trained):
    job_dir, log = trained
    train_lines = [line for line in log.splitlines() if line.startswith("Train batch")]
    assert [int(line.split()[2].rstrip(":")) for line in train_lines] == list(range(0, 300, 25))
    assert all(re.fullmatch(r"Train batch \d+: loss: \d+\.\d\d grad norm: \d+\.\d\d time: \d+\.\d{3}", line)
               for line in train_lines), train_lines[:3]
    val_lines = [line for line in log.splitlines() if line.startswith("Val batch")]
    assert [line.split()[2] for line in val_lines] == ["0:", "100:", "200:", "299:"]
    assert all(re.fullmatch(r"Val batch \d+: DER \(avg\): \d\.\d{4} CTC Loss \(avg\): \d+\.\d{4} time: \d+\.\d{3}", line)
               for line in val_lines), val_lines

    metrics = metric_values(log)
    assert set(metrics) == {definition.name for definition in metric_definitions()}  # every regex finds its line
    assert len(metrics["train:loss"]) == len(metrics["train:grad_norm"]) == 12
    assert len(metrics["validation:der"]) == len(metrics["validation:ctc_loss"]) == 4
    assert metrics["validation:best_der"] == [min(metrics["validation:der"])]
    # the validation numbers the regexes read are the ones train.py measured (metrics.json keeps them unrounded)
    measured = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation:der"] == pytest.approx([entry["avg_DER"] for entry in measured["history"]], abs=5e-5)
    assert metrics["validation:ctc_loss"] == pytest.approx([entry["avg_loss"] for entry in measured["history"]], abs=5e-5)
    assert metrics["validation:best_der"] == pytest.approx([measured["best_DER"]], abs=5e-5)


@pytest.mark.slow
def test_training_learns_the_synthetic_diphones(trained):
    _, log = trained
    metrics = metric_values(log)
    gate = load_workload("brain_to_text", "local").evaluation
    assert metrics["validation:der"][0] >= 0.95, log  # untrained: all blank
    assert metrics["validation:best_der"][0] <= gate.threshold, log  # measured ~0.23
    assert metrics["train:loss"][-1] < metrics["train:loss"][0] / 2


@pytest.mark.slow
def test_model_dir_holds_the_best_checkpoint_args_metrics_log_and_code(trained, train_module):
    import torch
    import yaml

    job_dir, log = trained
    model_dir = job_dir / "model"
    assert sorted(p.name for p in (model_dir / "checkpoint").iterdir()) == ["args.yaml", "best_checkpoint", "val_metrics.json"]
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["dataset.py", "inference.py", "inference_errors.py", "model.py", "requirements.txt"]

    best = torch.load(model_dir / "checkpoint" / "best_checkpoint", weights_only=True)
    args = yaml.safe_load((model_dir / "checkpoint" / "args.yaml").read_text())
    assert args["sessions"] == ["t15.2025.01.06", "t15.2025.01.13", HELD_OUT]
    assert args["hyperparameters"]["n_units"] == 32 and args["hyperparameters"]["n_classes"] == 1681
    fresh = train_module.build_model(train_module.Hyperparameters(**args["hyperparameters"]), 3).state_dict()
    assert best["model_state_dict"].keys() == fresh.keys()
    assert f"Best avg val DER achieved: {best['val_DER']:.4f}" in log and best["batch"] == args["best_batch"]

    metrics = json.loads((model_dir / "checkpoint" / "val_metrics.json").read_text())
    assert metrics["avg_DER"] == best["val_DER"] and set(metrics["day_DERs"]) == set(args["sessions"])
    assert (model_dir / "training_log").read_text().splitlines()[0].startswith("data: 3 sessions")
    history = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())["history"]
    assert [h["batch"] for h in history] == [0, 100, 200, 299]
    assert (job_dir / "checkpoints" / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_trained_model_decodes_the_held_out_session_through_its_own_code(trained, data_dir):
    """code/inference.py, as the inference container loads it from model.tar.gz, decodes unseen trials."""
    job_dir, _ = trained
    inference = import_source("inference", job_dir / "model" / "code")
    model = inference.model_fn(str(job_dir / "model"))
    body = (data_dir / HELD_OUT / "data_test.hdf5").read_bytes()
    output, content_type = inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/x-hdf5"), model),
                                               "application/jsonlines")
    trials = [json.loads(line) for line in output.splitlines()]
    assert content_type == "application/jsonlines" and len(trials) == 8
    assert all(t["session"] == HELD_OUT and t["phonemes"] for t in trials)
    der = sum(t["edit_distance"] for t in trials) / sum(t["label_length"] for t in trials)
    assert der < 0.6, trials[:2]


@pytest.mark.slow
def test_resume_continues_at_the_next_batch(tmp_path, trained, data_dir):
    import torch

    job_dir, _ = trained
    shutil.copytree(job_dir / "checkpoints", tmp_path / "checkpoints")  # as SageMaker restores CheckpointConfig
    result = run_training(tmp_path, data_dir, *profile_flags(**{"num-training-batches": 306}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "at batch 300; best val DER so far" in result.stdout
    assert "output bias:" not in result.stdout  # the checkpoint's weights, not a fresh initialisation
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith(("Train batch", "Val batch"))] == [
        "Train batch 300", "Val batch 300", "Val batch 305"]
    checkpoint = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert checkpoint["next_batch"] == 306 and [h["batch"] for h in checkpoint["history"]] == [0, 100, 200, 299, 300, 305]


@pytest.mark.slow
def test_bad_hyperparameters_fail_before_any_work(tmp_path, data_dir):
    result = run_training(tmp_path, data_dir, "--n-units", "0", "--lr-max", "-1", "--data-s3-uri", "bucket/data")
    assert result.returncode != 0
    for message in ("--n-units must be at least 1 (got 0)", "--lr-max must be a positive number (got -1.0)",
                    "--data-s3-uri must be an s3:// URI (got 'bucket/data')"):
        assert message in result.stderr
    assert not (tmp_path / "model").exists()


# ---- in-process: settings, schedule, initialisation


def test_flags_arrive_in_either_spelling_with_string_booleans(train_module, monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/data/train")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "/job")
    hp, paths = train_module.parse_args(["--n-units", "64", "--batch_size", "16", "--use-amp", "False",
                                         "--data-s3-uri", "s3://b/data", "--_tuning_objective_metric", "validation:der"])
    assert (hp.n_units, hp.batch_size, hp.use_amp, hp.data_s3_uri) == (64, 16, False, "s3://b/data")
    assert (hp.n_classes, hp.n_layers, hp.num_training_batches, hp.lr_max, hp.weight_decay) == (1681, 5, 150000, 0.004, 0.002)
    assert paths.train == "/data/train" and hp.checkpoint_dir == "/job/checkpoints"


@pytest.mark.parametrize("argv, message", [
    (["--n-unit", "3"], "unrecognized hyperparameter(s) --n-unit"),
    (["--use-amp", "maybe"], "expected true or false, got 'maybe'"),
    (["--batch-size", "many"], "invalid int value: 'many'"),
])
def test_unknown_or_malformed_flags_are_refused(train_module, capsys, argv, message):
    with pytest.raises(SystemExit):
        train_module.parse_args(argv)
    assert message in capsys.readouterr().err


def test_the_aws_profile_trains_the_diphone_configuration(train_module):
    hp, _ = train_module.parse_args(profile_flags("aws"))
    train_module.validate(hp)
    assert (hp.n_classes, hp.n_units, hp.batch_size, hp.rnn_dropout, hp.num_training_batches, hp.lr_max, hp.weight_decay) == (
        1681, 1024, 48, 0.5, 150000, 0.004, 0.002)
    hp, _ = train_module.parse_args(profile_flags("local"))
    train_module.validate(hp)


def test_learning_rate_warms_up_then_decays_to_the_minimum(train_module):
    factors = [train_module.lr_factor(step, 10, 100, 0.025) for step in range(120)]
    assert factors[0] == 0 and factors[5] == 0.5 and factors[10] == 1.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[100:] == [0.025] * 20


def test_output_bias_starts_at_the_log_class_frequencies(train_module):
    import torch

    hp, _ = train_module.parse_args(["--n-units", "8", "--n-layers", "1", "--patch-size", "0"])
    model = train_module.build_model(hp, n_days=1)
    batch = {"seq_class_ids": torch.tensor([[5, 7, 7], [7, 0, 0]]), "seq_lens": torch.tensor([3, 1]),
             "n_time_steps": torch.tensor([10, 6])}
    seen = train_module.init_output_bias(model, [batch])
    assert seen == {"labels": 4, "classes_seen": 2, "frames": 16}
    p = model.out.bias.detach().softmax(0)
    # counts (plus 0.1 each): blank 12, the 16 frames less the 4 labels; class 7 three times, 5 once, 6 never
    assert p[0] / p[7] == pytest.approx(12.1 / 3.1) and p[7] / p[5] == pytest.approx(3.1 / 1.1)
    assert p[5] / p[6] == pytest.approx(1.1 / 0.1) and float(p.sum()) == pytest.approx(1.0)


# ---- real training jobs on the local SageMaker: streamed from S3, failures named


def _training_job(sagemaker_client, s3_client, data_uri: str, name: str, **hyperparameters) -> dict:
    from include.pipelines import images, packaging, requests

    cfg = load_workload("brain_to_text", "local").with_overrides(bucket=TEST_BUCKET)
    source_uri = packaging.upload_source(s3_client, TEST_BUCKET, cfg.s3_prefix, cfg.source_path)
    request = requests.build_training_request(cfg, job_name=name, image_uri=images.training_image_uri(cfg, "us-east-1"),
                                              source_uri=source_uri, channels={"train": data_uri},
                                              hyperparameter_overrides=hyperparameters)
    sagemaker_client.create_training_job(**request)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = sagemaker_client.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            return job
        time.sleep(2)
    raise AssertionError(f"{name} still {job['TrainingJobStatus']} after 10 minutes")


def _upload(s3_client, folder: Path, prefix: str) -> str:
    for path in sorted(folder.rglob("*.hdf5")):
        s3_client.upload_file(str(path), TEST_BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return f"s3://{TEST_BUCKET}/{prefix}"


@pytest.mark.slow
def test_a_job_streams_its_sessions_and_a_missing_field_fails_it_naming_file_and_trial(
        sagemaker_client, s3_client, logs_client, data_dir, tmp_path):
    import h5py

    good_uri = _upload(s3_client, data_dir, "brain-to-text-jobs/good")
    job = _training_job(sagemaker_client, s3_client, good_uri, "b2t-streams", **{"num-training-batches": 4,
                                                                                 "batches-per-val-step": 4})
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "InputDataConfig" not in job and job["HyperParameters"]["data-s3-uri"] == good_uri  # nothing downloaded
    streams = logs_client.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="b2t-streams/")
    events = logs_client.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamName=streams["logStreams"][0]["logStreamName"], startFromHead=True)["events"]
    log = "\n".join(e["message"] for e in events)
    assert f"3 sessions from {good_uri} (streamed from S3)" in log and "bytes from S3 in this process" in log

    broken = Path(shutil.copytree(data_dir, tmp_path / "broken"))
    with h5py.File(broken / "t15.2025.01.13" / "data_val.hdf5", "a") as f:
        del f["trial_0002/seq_class_ids"]
    broken_uri = _upload(s3_client, broken, "brain-to-text-jobs/missing-field")
    job = _training_job(sagemaker_client, s3_client, broken_uri, "b2t-missing-field", **{"num-training-batches": 4})
    assert job["TrainingJobStatus"] == "Failed"
    assert (f"TrialDataError: {broken_uri}/t15.2025.01.13/data_val.hdf5: trial_0002 lacks the dataset 'seq_class_ids'"
            in job["FailureReason"]), job["FailureReason"]


@pytest.mark.slow
def test_a_truncated_session_file_fails_the_job_naming_it(sagemaker_client, s3_client, data_dir, tmp_path):
    broken = Path(shutil.copytree(data_dir, tmp_path / "truncated"))
    path = broken / "t15.2025.01.06" / "data_train.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 4096])
    uri = _upload(s3_client, broken, "brain-to-text-jobs/truncated")
    job = _training_job(sagemaker_client, s3_client, uri, "b2t-truncated", **{"num-training-batches": 4})
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert f"TrialDataError: {uri}/t15.2025.01.06/data_train.hdf5: cannot be opened as HDF5" in reason, reason
    assert "truncated" in reason


def test_metric_definitions_fit_the_sagemaker_api():
    from include.aws_shapes import request_problems

    request = {
        "TrainingJobName": "brain-to-text", "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311", "TrainingInputMode": "File",
                                   "MetricDefinitions": [{"Name": m.name, "Regex": m.regex} for m in metric_definitions()]},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    assert request_problems("sagemaker", "CreateTrainingJob", request) == []


def test_metric_regexes_read_only_the_lines_meant_for_them():
    log = "\n".join([
        "Train batch 200: loss: 5.21 grad norm: 8.43 time: 0.538",
        "Val batch 1500: DER (avg): 0.7654 CTC Loss (avg): 1.2345 time: 3.210",
        "t15.2023.08.13 val DER: 0.7012",
        "New best val DER 0.8000 --> 0.7654 (CTC loss 1.2345)",
        "Best avg val DER achieved: 0.7654",
    ])
    assert metric_values(log) == {"train:loss": [5.21], "train:grad_norm": [8.43], "validation:der": [0.7654],
                                  "validation:ctc_loss": [1.2345], "validation:best_der": [0.7654]}
