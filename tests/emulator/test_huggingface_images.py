"""The Hugging Face images' own defaults on the local SageMaker: a model with no inference.py served by
the HF toolkit's transformers pipeline, and a transformers Trainer script on the HF training image.

The models are tiny and built here from a config and a five-word vocabulary (no hub access)."""
from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.emulator.hosting_fixtures import (
    create_config,
    create_model,
    instance_variant,
    unique,
    wait_for_status,
)

HF_INFERENCE_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                      "huggingface-pytorch-inference:2.3.0-transformers4.48.0-cpu-py311-ubuntu22.04")
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "very", "some", "text"]


def tiny_text_classifier(folder: Path) -> dict[str, bytes]:
    """A DistilBERT sequence classifier and its tokenizer, save_pretrained into ``folder``; the files."""
    import torch
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(VOCAB), dim=16, hidden_dim=32, n_layers=1, n_heads=2,
                              max_position_embeddings=32, id2label=LABELS,
                              label2id={label: index for index, label in LABELS.items()})
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def _deploy_hf(sagemaker_client, s3_client, name: str, files: dict, environment: dict) -> str:
    create_model(sagemaker_client, s3_client, name, files, image=HF_INFERENCE_IMAGE, environment=environment)
    config = create_config(sagemaker_client, name, [instance_variant(name)])
    sagemaker_client.create_endpoint(EndpointName=name, EndpointConfigName=config)
    return name


# on a model with code/inference.py: only output_fn is the user's, model_fn/input_fn/predict_fn the toolkit's
OUTPUT_FN_ONLY = textwrap.dedent(
    """
    import json

    def output_fn(prediction, accept):
        return json.dumps({"user_output_fn": True, "prediction": prediction})
    """
)


@pytest.mark.slow
def test_hf_inference_image_serves_a_pipeline_with_no_inference_script(tmp_path, sagemaker_client, s3_client,
                                                                     runtime_client, logs_client):
    files = tiny_text_classifier(tmp_path / "model")
    assert not any(name.startswith("code/") for name in files)
    # the real image's defaults: HF_TASK names the pipeline ...
    by_task = _deploy_hf(sagemaker_client, s3_client, unique("hf-task"), files, {"HF_TASK": "text-classification"})
    # ... or, without it, the task comes from config.json's architecture; a user output_fn overrides one step
    inferred = _deploy_hf(sagemaker_client, s3_client, unique("hf-inferred"),
                          {**files, "code/inference.py": OUTPUT_FN_ONLY}, {})

    for endpoint in (by_task, inferred):
        described = wait_for_status(sagemaker_client, endpoint, {"InService", "Failed"}, timeout=240)
        assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    response = runtime_client.invoke_endpoint(EndpointName=by_task, Body=json.dumps({"inputs": "some text"}),
                                              ContentType="application/json")
    answer = json.loads(response["Body"].read())
    assert response["ContentType"] == "application/json"
    assert isinstance(answer, list) and len(answer) == 1, answer
    assert answer[0]["label"] in LABELS.values() and 0.0 < answer[0]["score"] <= 1.0, answer

    # "parameters" go to the pipeline's call, as on the real image
    response = runtime_client.invoke_endpoint(
        EndpointName=by_task, ContentType="application/json",
        Body=json.dumps({"inputs": ["very good movie", "bad movie"], "parameters": {"top_k": 2}}))
    answers = json.loads(response["Body"].read())
    assert [sorted(item["label"] for item in per_input) for per_input in answers] == [sorted(LABELS.values())] * 2

    response = runtime_client.invoke_endpoint(EndpointName=inferred, Body=json.dumps({"inputs": "bad movie"}),
                                              ContentType="application/json")
    answer = json.loads(response["Body"].read())
    assert answer["user_output_fn"] is True and answer["prediction"][0]["label"] in LABELS.values(), answer

    # the toolkit answers a request it cannot handle with 400 and its message; the server goes on serving
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        runtime_client.invoke_endpoint(EndpointName=by_task, Body=b"\x00\x01", ContentType="application/x-unknown")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert caught.value.response["OriginalStatusCode"] == 400
    response = runtime_client.invoke_endpoint(EndpointName=by_task, Body=json.dumps({"inputs": "good"}),
                                              ContentType="application/json")
    assert json.loads(response["Body"].read())[0]["label"] in LABELS.values()

    for endpoint in (by_task, inferred):
        sagemaker_client.delete_endpoint(EndpointName=endpoint)


# --- the Hugging Face training image: a transformers Trainer script, with datasets/accelerate/evaluate ---

HF_TRAINING_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                     "huggingface-pytorch-training:2.3.0-transformers4.48.0-gpu-py311-cu121-ubuntu20.04")

TRAINER_PY = textwrap.dedent(
    """
    import argparse, json, os, tempfile

    import accelerate  # noqa: F401 - the Trainer's own dependency, as on the image
    import evaluate  # noqa: F401 - shipped by the image; evaluate.load would need the hub
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (BertTokenizerFast, DistilBertConfig, DistilBertForSequenceClassification,
                              Trainer, TrainingArguments)

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    args = parser.parse_args()

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "very"]
    vocab_file = os.path.join(tempfile.gettempdir(), "vocab.txt")
    with open(vocab_file, "w") as handle:
        handle.write("\\n".join(vocab) + "\\n")
    tokenizer = BertTokenizerFast(vocab_file=vocab_file)
    texts = ["good movie", "bad movie", "very good", "very bad"] * 4
    data = Dataset.from_dict({"text": texts, "label": [0, 1, 0, 1] * 4})
    data = data.map(lambda batch: tokenizer(batch["text"], padding="max_length", max_length=8, truncation=True),
                    batched=True)
    split = data.train_test_split(test_size=0.25, seed=0)

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(vocab), dim=16, hidden_dim=32, n_layers=1, n_heads=2,
                              max_position_embeddings=16, num_labels=2)
    model = DistilBertForSequenceClassification(config)

    def compute_metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=os.path.join(tempfile.gettempdir(), "trainer-out"), num_train_epochs=args.epochs,
        per_device_train_batch_size=4, per_device_eval_batch_size=4, learning_rate=1e-3,
        eval_strategy="epoch", save_strategy="no", logging_steps=1, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=split["train"], eval_dataset=split["test"],
                      compute_metrics=compute_metrics)
    result = trainer.train()
    metrics = trainer.evaluate()
    print(f"train_loss={result.training_loss:.4f}; eval_accuracy={metrics['eval_accuracy']:.4f};")
    trainer.save_model(args.model_dir)
    tokenizer.save_pretrained(args.model_dir)
    """
)


@pytest.mark.slow
def test_hf_training_image_runs_a_trainer_script(sagemaker_client, s3_client, logs_client):
    from tests.conftest import TEST_BUCKET
    from tests.emulator.test_training_jobs import read_tarball, training_request, wait_until_done

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = TRAINER_PY.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3_client.put_object(Bucket=TEST_BUCKET, Key="hf-tests/source/sourcedir.tar.gz", Body=buffer.getvalue())
    s3_client.put_object(Bucket=TEST_BUCKET, Key="hf-tests/data/train/unused.txt", Body=b"the data is in the script")
    name = unique("hf-trainer")
    request = training_request(name, f"s3://{TEST_BUCKET}/hf-tests/source/sourcedir.tar.gz",
                               f"s3://{TEST_BUCKET}/hf-tests/data/train", image=HF_TRAINING_IMAGE, epochs=2)
    request["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "train:loss", "Regex": r"train_loss=([0-9.]+);"},
        {"Name": "eval:accuracy", "Regex": r"eval_accuracy=([0-9.]+);"},
    ]
    sagemaker_client.create_training_job(**request)
    job = wait_until_done(sagemaker_client, name, timeout=600)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    metrics = {metric["MetricName"]: metric["Value"] for metric in job["FinalMetricDataList"]}
    assert set(metrics) == {"train:loss", "eval:accuracy"}, metrics
    files = read_tarball(s3_client, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files), sorted(files)
