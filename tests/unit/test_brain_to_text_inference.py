"""The Brain-to-Text inference handlers (code/inference.py), called in-process as sagemaker-inference calls them."""
import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest

from include.datasets import brain_to_text as generator
from tests.unit.test_brain_to_text_dataset import SOURCE_DIR, import_source

SESSIONS = ["t15.2025.01.06", "t15.2025.01.13"]


@pytest.fixture(scope="module")
def inference():
    return import_source("inference")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return generator.generate(tmp_path_factory.mktemp("b2t"), sessions=2, train_trials=1, val_trials=1, test_trials=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory as train.py writes it, with untrained weights: these tests check the handlers, not accuracy."""
    import torch
    import yaml

    train = import_source("train")
    hp, _ = train.parse_args(["--n-units", "16", "--n-layers", "1", "--patch-size", "0"])
    directory = tmp_path_factory.mktemp("model")
    (directory / "checkpoint").mkdir()
    model = train.build_model(hp, len(SESSIONS))
    torch.save({"model_state_dict": model.state_dict(), "val_DER": 1.0, "val_loss": 1.0, "batch": 0},
               directory / "checkpoint" / "best_checkpoint")
    (directory / "checkpoint" / "args.yaml").write_text(yaml.safe_dump({"hyperparameters": asdict(hp), "sessions": SESSIONS}))
    shutil.copytree(SOURCE_DIR, directory / "code", ignore=shutil.ignore_patterns("__pycache__", "train.py"))
    return directory


@pytest.fixture(scope="module")
def model(inference, model_dir):
    return inference.model_fn(str(model_dir))


def _invoke(inference, model, body, content_type, accept="application/json"):
    return inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), accept)


def test_a_session_file_is_decoded_trial_by_trial_as_json_lines(inference, model, data_dir):
    body = (data_dir / SESSIONS[1] / "data_test.hdf5").read_bytes()
    output, content_type = _invoke(inference, model, body, "application/x-hdf5", "application/jsonlines")
    trials = [json.loads(line) for line in output.splitlines()]
    assert content_type == "application/jsonlines" and output.endswith("\n")
    assert [t["trial"] for t in trials] == ["trial_0000", "trial_0001", "trial_0002"]
    for trial in trials:
        assert trial["session"] == SESSIONS[1] and trial["block_num"] == 3 and trial["n_time_steps"] > 0
        assert len(trial["phonemes"]) == len(trial["diphone_ids"]) and all(0 < d < 1681 for d in trial["diphone_ids"])
        assert trial["phonemes"] == [generator.PHONEMES[d % 41] for d in trial["diphone_ids"]]
        # labelled test file: every trial scored against its labels
        assert trial["der"] == round(trial["edit_distance"] / trial["label_length"], 4) and trial["sentence_label"]


def test_an_unlabelled_file_is_decoded_without_scores(inference, model, tmp_path):
    unlabelled = generator.generate(tmp_path, sessions=1, train_trials=1, val_trials=1, test_trials=2, test_labels=False)
    output, _ = _invoke(inference, model, (unlabelled / SESSIONS[0] / "data_test.hdf5").read_bytes(), "application/x-hdf5")
    predictions = json.loads(output)["predictions"]
    assert len(predictions) == 2 and not any("der" in p or "sentence_label" in p for p in predictions)


def test_json_trials_are_decoded_with_their_session_layer(inference, model):
    features = np.random.default_rng(0).normal(size=(30, 512)).round(3).tolist()
    body = json.dumps({"instances": [{"session": SESSIONS[0], "input_features": features},
                                     {"session": SESSIONS[1], "input_features": features[:10], "seq_class_ids": [5, 210]}]})
    predictions = json.loads(_invoke(inference, model, body, "application/json; charset=utf-8")[0])["predictions"]
    assert [p["session"] for p in predictions] == SESSIONS and [p["n_time_steps"] for p in predictions] == [30, 10]
    assert "der" not in predictions[0] and predictions[1]["label_length"] == 2
    single = json.loads(_invoke(inference, model, json.dumps({"session": SESSIONS[0], "input_features": features}),
                                "application/json")[0])["predictions"]
    assert single[0]["diphone_ids"] == predictions[0]["diphone_ids"]  # the same trial decodes the same, alone or batched


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"not an hdf5 file", "application/x-hdf5", 400, "The body is not a readable HDF5 file"),
    (b"{", "application/json", 400, "The body is not valid UTF-8 JSON"),
    (b"[" * 100_000, "application/json", 400, "more than 32 levels deep"),  # json.loads alone: RecursionError, a 500
    (b'{"session": "t15.2025.01.06", "input_features": ' + b"[" * 40 + b"]" * 40 + b"}", "application/json", 400,
     "more than 32 levels deep"),
    (b'{"input_features": [[1, 2]]}', "application/json", 400, 'instances[0] must be an object with "session"'),
    (b'{"session": "t15.2025.01.06", "input_features": [1, 2]}', "application/json", 400, "must be [time x features]"),
    (b'{"session": "t15.2025.01.06", "input_features": [[1, 2]]}', "application/json", 400, "has 2 features per step, the model takes 512"),
    (b'{"session": "t15.1999.01.01", "input_features": [[1, 2]]}', "application/json", 400,
     "session 't15.1999.01.01' has no day layer in this model; it was trained on t15.2025.01.06, t15.2025.01.13"),
    (b'{"instances": []}', "application/json", 400, '"instances" must be a non-empty list'),
    (b"1,2,3", "text/csv", 415, "Content type 'text/csv' is not supported"),
])
def test_bad_requests_get_client_errors(inference, model, body, content_type, status, message):
    with pytest.raises(inference.InferenceRequestError) as caught:
        _invoke(inference, model, body, content_type)
    assert caught.value.status_code == status and message in str(caught.value)


def test_a_trial_missing_a_field_is_a_client_error_naming_it(inference, model, data_dir, tmp_path):
    import h5py

    path = tmp_path / "data_test.hdf5"
    shutil.copy(data_dir / SESSIONS[0] / "data_test.hdf5", path)
    with h5py.File(path, "a") as f:
        del f["trial_0001/input_features"]
    with pytest.raises(inference.InvalidInputError, match="request: trial_0001 lacks the dataset 'input_features'"):
        _invoke(inference, model, path.read_bytes(), "application/x-hdf5")
    with pytest.raises(inference.InvalidInputError, match="The body is not a readable HDF5 file"):
        _invoke(inference, model, path.read_bytes()[:2000], "application/x-hdf5")


def test_an_unsupported_accept_is_refused(inference, model):
    body = json.dumps({"session": SESSIONS[0], "input_features": [[0.0] * 512] * 5})
    with pytest.raises(inference.UnsupportedAcceptError) as caught:
        _invoke(inference, model, body, "application/json", "text/csv")
    assert caught.value.status_code == 406


def test_model_fn_says_what_the_archive_lacks(inference, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint/args.yaml is missing"):
        inference.model_fn(str(tmp_path))
