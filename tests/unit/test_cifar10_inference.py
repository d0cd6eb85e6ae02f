"""The CIFAR-10 inference handlers (code/inference.py), called in-process as sagemaker-inference calls them."""
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from include.datasets.cifar10 import LABEL_NAMES, sample_images
from tests.source_modules import import_source as _import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "cifar10"


def import_source(name: str, directory: Path = SOURCE_DIR):
    return _import_source(name, directory)


@pytest.fixture(scope="module")
def inference():
    return import_source("inference")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory as train.py writes it, with untrained weights: these tests check the handlers, not accuracy."""
    import torch

    model = import_source("model")
    directory = tmp_path_factory.mktemp("model")
    torch.save(model.build_model().state_dict(), directory / "model.pth")
    info = {"class_names": list(LABEL_NAMES), "mean": list(model.CIFAR10_MEAN), "std": list(model.CIFAR10_STD)}
    (directory / "model_info.json").write_text(json.dumps(info))
    return directory


@pytest.fixture(scope="module")
def loaded(inference, model_dir):
    return inference.model_fn(str(model_dir))


def invoke(inference, loaded, body, content_type, accept="application/json"):
    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), loaded), accept))


def encode(image: np.ndarray, fmt: str, size=None, mode="RGB") -> bytes:
    from PIL import Image

    picture = Image.fromarray(image).convert(mode)
    if size:
        picture = picture.resize(size)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def assert_single(answer: dict):
    assert set(answer) == {"predicted_class", "predicted_index", "probabilities"}
    assert list(answer["probabilities"]) == list(LABEL_NAMES)
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert answer["predicted_class"] == LABEL_NAMES[answer["predicted_index"]]
    assert answer["probabilities"][answer["predicted_class"]] == max(answer["probabilities"].values())


def assert_batch(answer: dict, count: int):
    assert set(answer) == {"predictions"} and len(answer["predictions"]) == count
    for prediction in answer["predictions"]:
        assert_single(prediction)


IMAGES = np.stack([image for _, image in sample_images(4)])


def test_model_fn_loads_weights_on_cpu(loaded):
    assert loaded.device.type == "cpu" and loaded.class_names == list(LABEL_NAMES)
    assert not loaded.network.training


def test_png_of_one_image(inference, loaded):
    assert_single(invoke(inference, loaded, encode(IMAGES[0], "PNG"), "image/png"))


@pytest.mark.parametrize("size, mode", [((32, 32), "RGB"), ((200, 120), "RGB"), ((17, 9), "L")])
def test_jpeg_of_any_size_and_mode(inference, loaded, size, mode):
    assert_single(invoke(inference, loaded, encode(IMAGES[1], "JPEG", size, mode), "image/jpeg"))


def test_png_with_alpha_and_content_type_parameters(inference, loaded):
    assert_single(invoke(inference, loaded, encode(IMAGES[2], "PNG", (64, 64), "RGBA"), "image/png; charset=binary", "*/*"))


@pytest.mark.parametrize("array, single", [
    (IMAGES[0], True),                                              # HxWx3 uint8
    (np.kron(IMAGES[0], np.ones((2, 2, 1), np.uint8)), True),       # 64x64x3, resized
    (IMAGES[0].transpose(2, 0, 1) / 255.0, True),                   # 3x32x32 float 0-1
    (IMAGES, False),                                                # Nx32x32x3 uint8
    (IMAGES.transpose(0, 3, 1, 2).astype(np.float32) / 255, False),  # Nx3x32x32 float 0-1
    (IMAGES.astype(np.float64), False),                             # float 0-255
    (IMAGES[:1], False),                                            # a batch of one is still a batch
])
def test_npy_single_and_batch(inference, loaded, array, single):
    answer = invoke(inference, loaded, npy(array), "application/x-npy")
    assert_single(answer) if single else assert_batch(answer, len(array))


def test_same_pixels_give_the_same_answer_in_every_format(inference, loaded):
    from_npy = invoke(inference, loaded, npy(IMAGES[3]), "application/x-npy")
    from_png = invoke(inference, loaded, encode(IMAGES[3], "PNG"), "image/png")
    from_json = invoke(inference, loaded, json.dumps(IMAGES[3].tolist()), "application/json")
    for answer in (from_png, from_json):
        assert answer["predicted_index"] == from_npy["predicted_index"]
        assert answer["probabilities"] == pytest.approx(from_npy["probabilities"], abs=1e-5)


def test_json_instances_are_a_batch(inference, loaded):
    body = json.dumps({"instances": [IMAGES[0].tolist(), (IMAGES[1] / 255).tolist()]}).encode()
    assert_batch(invoke(inference, loaded, body, "application/json"), 2)
    one = json.dumps({"instances": [IMAGES[0].tolist()]})  # sagemaker-inference hands JSON over as str
    assert_batch(invoke(inference, loaded, one, "application/json"), 1)


def test_json_bare_lists(inference, loaded):
    assert_single(invoke(inference, loaded, json.dumps(IMAGES[0].tolist()), "application/json"))
    assert_batch(invoke(inference, loaded, json.dumps(IMAGES.tolist()), "application/json"), len(IMAGES))


def assert_rejected(inference, body, content_type, status, *phrases):
    with pytest.raises(inference.InferenceRequestError) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == status
    for phrase in phrases:
        assert phrase in str(caught.value)


def test_garbage_as_png_is_a_400(inference):
    assert_rejected(inference, b"definitely not a png", "image/png", 400, "not a readable image/png image")


def test_truncated_png_is_a_400(inference):
    png = encode(IMAGES[0], "PNG", (128, 128))
    assert_rejected(inference, png[: len(png) // 2], "image/png", 400, "truncated")


@pytest.mark.parametrize("array, phrase", [
    (np.zeros((32, 32), np.uint8), "shape [32, 32]"),
    (np.zeros((2, 32, 32, 4), np.uint8), "shape [2, 32, 32, 4]"),
    (np.zeros((1, 2, 3, 32, 32), np.uint8), "shape [1, 2, 3, 32, 32]"),
    (np.zeros((0, 32, 32, 3), np.uint8), "no pixels"),
    (np.full((32, 32, 3), 300.0), "outside 0-255"),
    (np.full((32, 32, 3), np.nan), "outside 0-255"),
    (np.array(["a", "b", "c"]), "must hold numbers"),
])
def test_wrong_npy_arrays_are_a_400(inference, array, phrase):
    assert_rejected(inference, npy(array), "application/x-npy", 400, phrase, "HxWx3" if "shape" in phrase else "")


def test_undecodable_npy_and_pickles_are_a_400(inference):
    assert_rejected(inference, b"\x93NUMPY garbage", "application/x-npy", 400, "not a .npy array")
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_rejected(inference, buffer.getvalue(), "application/x-npy", 400, "not a .npy array")


@pytest.mark.parametrize("body, phrase", [
    ("{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe", "not valid UTF-8 JSON"),
    ("[" * 100_000, "more than 32 levels deep"),  # json.loads alone would raise RecursionError: a 500
    ('{"instances": ' + "[" * 40 + "]" * 40 + "}", "more than 32 levels deep"),
    ('{"inputs": []}', '{"instances": [image, ...]}'),
    ('{"instances": []}', '{"instances": [image, ...]}'),
    ('"a string"', '{"instances": [image, ...]}'),
    ("[[1, 2], [3]]", "not a rectangular array"),
    ('{"instances": [[[[1, 2, 3]]], [[[[1, 2, 3]]]]]}', "instances[1] holds a batch"),
    ('{"instances": [[[1, 2, 3]]]}', "instances[0] has shape [1, 3]"),
])
def test_bad_json_is_a_400(inference, body, phrase):
    assert_rejected(inference, body, "application/json", 400, phrase)


@pytest.mark.parametrize("content_type", ["text/csv", "application/octet-stream", "image/gif", None])
def test_unsupported_content_type_is_a_415(inference, content_type):
    assert_rejected(inference, b"1,2,3", content_type, 415, "image/png, image/jpeg, application/x-npy, application/json")


def test_unsupported_accept_is_a_406(inference, loaded):
    prediction = inference.predict_fn(inference.input_fn(npy(IMAGES[0]), "application/x-npy"), loaded)
    with pytest.raises(inference.InferenceRequestError) as caught:
        inference.output_fn(prediction, "text/csv")
    assert caught.value.status_code == 406
    assert json.loads(inference.output_fn(prediction, "text/csv, application/json;q=0.9"))["predicted_class"] in LABEL_NAMES


def test_errors_are_ones_the_sagemaker_toolkit_answers_with_their_status(inference):
    from sagemaker_inference.errors import BaseInferenceToolkitError

    error = inference.InvalidInputError("bad pixels")
    assert isinstance(error, BaseInferenceToolkitError)
    assert (error.status_code, error.message, str(error)) == (400, "bad pixels", "bad pixels")
    assert inference.UnsupportedContentTypeError("x").status_code == 415


def test_missing_weights_fail_model_fn_clearly(inference, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pth"):
        inference.model_fn(str(tmp_path))
