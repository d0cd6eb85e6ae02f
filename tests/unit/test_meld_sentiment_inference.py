"""The MELD inference handlers (code/inference.py), called in-process as sagemaker-inference calls them."""
import base64
import json
from pathlib import Path

import numpy as np
import pytest

from include.datasets import meld_sentiment
from tests.source_modules import import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "meld_sentiment"
JSON = "application/json"


@pytest.fixture(scope="module")
def inference():
    return import_source("inference", SOURCE_DIR)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory as train.py writes it, with untrained weights: these tests check the handlers, not accuracy."""
    from dataclasses import asdict

    train = import_source("train", SOURCE_DIR)
    model_module = import_source("model", SOURCE_DIR)
    media = import_source("media", SOURCE_DIR)
    tokenizer = train.scratch_tokenizer(["oh my god you got the part", "get out of my apartment"], 200, 32)
    from transformers import BertModel

    transformer = BertModel(model_module.small_bert_config(len(tokenizer), 32, 1, 32))
    arch = model_module.ArchitectureSettings(video_backbone="conv3d", video_channels=4, audio_channels=8, n_mels=16, hidden_size=16)
    network = model_module.MultimodalSentimentModel(transformer, arch)
    settings = media.MediaSettings(num_frames=3, frame_size=16, n_mels=16, audio_frames=50)
    info = {"emotions": list(model_module.EMOTIONS), "sentiments": list(model_module.SENTIMENTS),
            "architecture": arch.to_dict(), "media": asdict(settings), "max_text_length": 32}
    directory = tmp_path_factory.mktemp("model")
    train.write_model_artifacts(directory, network.state_dict(), info, transformer, tokenizer)
    return directory


@pytest.fixture(scope="module")
def model(inference, model_dir):
    return inference.model_fn(str(model_dir))


@pytest.fixture(scope="module")
def clips():
    return meld_sentiment.sample_clips(2, seed=5)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer(inference, model, body, content_type=JSON, accept=JSON) -> dict:
    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), accept))


def check_documented_shape(one: dict) -> None:
    for head, names in (("emotion", meld_sentiment.EMOTIONS), ("sentiment", meld_sentiment.SENTIMENTS)):
        probabilities = one[head]["probabilities"]
        assert list(probabilities) == list(names)
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert one[head]["label"] == max(probabilities, key=probabilities.get)
    assert isinstance(one["warnings"], list)


def test_one_utterance_gets_emotion_and_sentiment_probabilities(inference, model, clips):
    one = answer(inference, model, json.dumps({"text": clips[0]["text"], "video_base64": b64(clips[0]["clip"])}))
    check_documented_shape(one)
    assert one["warnings"] == []


def test_instances_get_one_prediction_each(inference, model, clips):
    body = json.dumps({"instances": [{"text": c["text"], "video_base64": b64(c["clip"])} for c in clips]}).encode()
    predictions = answer(inference, model, body)["predictions"]
    assert len(predictions) == 2
    for one in predictions:
        check_documented_shape(one)


def test_a_clip_without_audio_is_answered_with_a_warning(inference, model, tmp_path):
    frames = meld_sentiment.render_frames("joy", 8, np.random.default_rng(0))
    meld_sentiment.encode_clip(tmp_path / "mute.mp4", frames, None)
    one = answer(inference, model, json.dumps({"text": "Yay!", "video_base64": b64((tmp_path / "mute.mp4").read_bytes())}))
    check_documented_shape(one)
    assert one["warnings"] == ["the clip has no audio track: answered from the text and frames"]


def test_a_clip_is_read_from_s3_with_the_endpoint_s_credentials(inference, model, clips, emulator, s3_client,
                                                                 monkeypatch):
    # the handler builds its own client, as in the container; here it reaches the local SageMaker's S3
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    s3 = s3_client
    s3.create_bucket(Bucket="clips")
    s3.put_object(Bucket="clips", Key="dev/dia0_utt0.mp4", Body=clips[1]["clip"])
    one = answer(inference, model, json.dumps({"text": clips[1]["text"], "video_s3_uri": "s3://clips/dev/dia0_utt0.mp4"}))
    check_documented_shape(one)
    with pytest.raises(inference.InvalidInputError, match=r"cannot read s3://clips/dev/nothing.mp4: NoSuchKey") as caught:
        inference.input_fn(json.dumps({"text": "hi", "video_s3_uri": "s3://clips/dev/nothing.mp4"}), JSON)
    assert caught.value.status_code == 400


@pytest.mark.parametrize("body, message", [
    ("not json", "The body is not valid UTF-8 JSON"),
    (b"\xff\xfe", "The body is not valid UTF-8 JSON"),
    ("[" * 100_000, "more than 32 levels deep"),  # json.loads alone would raise RecursionError: a 500
    ('{"text": ' + "{\"a\": " * 40 + "1" + "}" * 40 + "}", "more than 32 levels deep"),
    ('{"video_base64": "AAAA"}', "the request.text must be the utterance as a string, got NoneType"),
    ('{"text": "hi"}', "needs exactly one of video_base64 (the mp4 clip, base64) or video_s3_uri, got neither"),
    ('{"text": "hi", "video_base64": "AAAA", "video_s3_uri": "s3://b/k.mp4"}', "got video_base64 and video_s3_uri"),
    ('{"text": "hi", "video_base64": "not base64!"}', "the request.video_base64 is not valid base64"),
    ('{"text": "hi", "video_base64": ""}', "the request.video_base64 is empty"),
    ('{"text": "hi", "video_s3_uri": "https://example.com/clip.mp4"}', "video_s3_uri must look like s3://bucket/key.mp4"),
    ('{"instances": []}', "instances must be a list of 1 to 32 utterances"),
    ('{"instances": ["hello"]}', "instances[0] must be an object"),
    ('[1, 2]', "the request must be an object"),
])
def test_malformed_requests_are_client_errors(inference, body, message):
    with pytest.raises(inference.InvalidInputError) as caught:
        inference.input_fn(body, JSON)
    assert caught.value.status_code == 400 and message in str(caught.value)


def test_an_unreadable_clip_is_a_client_error_naming_the_field(inference, model):
    parsed = inference.input_fn(json.dumps({"instances": [{"text": "hi", "video_base64": b64(b"garbage bytes")}]}), JSON)
    with pytest.raises(inference.InvalidInputError, match=r"instances\[0\].video_base64 is not a readable mp4 clip \(moov atom not found\)") as caught:
        inference.predict_fn(parsed, model)
    assert caught.value.status_code == 400


def test_other_content_types_and_accepts_are_refused(inference, model, clips):
    with pytest.raises(inference.UnsupportedContentTypeError) as caught:
        inference.input_fn(clips[0]["clip"], "video/mp4")
    assert caught.value.status_code == 415 and "send application/json" in str(caught.value)
    prediction = inference.predict_fn(inference.input_fn(json.dumps({"text": "hi", "video_base64": b64(clips[0]["clip"])}), JSON), model)
    with pytest.raises(inference.UnsupportedAcceptError) as caught:
        inference.output_fn(prediction, "text/csv")
    assert caught.value.status_code == 406
    assert json.loads(inference.output_fn(prediction, "application/json; charset=utf-8"))["emotion"]


def test_errors_are_the_toolkit_s_so_the_server_answers_their_status(inference):
    from sagemaker_inference.errors import BaseInferenceToolkitError

    assert issubclass(inference.InvalidInputError, BaseInferenceToolkitError)


def test_a_model_dir_without_weights_says_what_is_missing(inference, model_dir, tmp_path):
    import shutil

    shutil.copytree(model_dir, tmp_path / "model")
    (tmp_path / "model" / "model.pth").unlink()
    with pytest.raises(FileNotFoundError, match="model.pth is missing"):
        inference.model_fn(str(tmp_path / "model"))
