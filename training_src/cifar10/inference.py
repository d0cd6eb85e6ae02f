"""Serve the CIFAR-10 ResNet-18: the handler functions of SageMaker's PyTorch inference container.

model.tar.gz holds model.pth, model_info.json and code/ (this file, model.py, requirements.txt). The
container (sagemaker-inference) calls model_fn(model_dir) once, then for each request
input_fn(body, content_type) -> predict_fn(data, model) -> output_fn(prediction, accept).

Requests (Content-Type):
- image/png, image/jpeg: one image of any size and mode; converted to RGB and resized to 32x32.
- application/x-npy: one image as HxWx3 or 3xHxW, or a batch as NxHxWx3 or Nx3xHxW (32x32 as trained;
  other sizes are resized). Integer pixels are 0-255; float pixels are 0-1, or 0-255 if any exceeds 1.
- application/json: {"instances": [image, ...]} (always a batch), or a bare nested list with the
  same shapes as x-npy.
Responses (Accept: application/json): one image gives
    {"predicted_class": "cat", "predicted_index": 3, "probabilities": {"airplane": 0.01, ...}}
and a batch gives {"predictions": [one such object per image]}.

Bad requests raise InvalidInputError (400), UnsupportedContentTypeError (415) or
UnsupportedAcceptError (406): sagemaker-inference answers a BaseInferenceToolkitError with its
status_code and message instead of a 500, and the model server keeps serving.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from inference_errors import InferenceRequestError, UnsupportedAcceptError, UnsupportedContentTypeError, parse_json_body
from model import CIFAR10_MEAN, CIFAR10_STD, CLASS_NAMES, INPUT_SIZE, build_model


JSON = "application/json"
NPY = "application/x-npy"
IMAGE_TYPES = ("image/png", "image/jpeg")
ACCEPTED = f"{', '.join(IMAGE_TYPES)}, {NPY}, {JSON}"
MAX_IMAGE_PIXELS = 4096 * 4096  # refuse to decode larger images (a small PNG can inflate to gigabytes)
PREDICT_CHUNK = 256  # images per forward pass, to bound memory on big batches


class InvalidInputError(InferenceRequestError):
    """The body could not be decoded, or holds pixels of the wrong shape or range."""

    status_code = 400


@dataclass
class LoadedModel:
    network: torch.nn.Module
    device: torch.device
    class_names: list[str]
    mean: torch.Tensor  # [1, 3, 1, 1] on device
    std: torch.Tensor


@dataclass
class Images:
    pixels: torch.Tensor  # float [N, 3, 32, 32], values in [0, 1]
    single: bool  # one image in the request (answer with one object) rather than a batch


@dataclass
class Predictions:
    probabilities: np.ndarray  # [N, num_classes]
    class_names: list[str]
    single: bool


def model_fn(model_dir):
    """Load model.pth (weights only) and model_info.json onto the GPU if there is one, else the CPU."""
    info_path = os.path.join(model_dir, "model_info.json")
    info = {}
    if os.path.isfile(info_path):
        with open(info_path) as f:
            info = json.load(f)
    class_names = list(info.get("class_names", CLASS_NAMES))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    weights_path = os.path.join(model_dir, "model.pth")
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"{weights_path} is missing: model.tar.gz must hold the model.pth that train.py writes")
    network = build_model(len(class_names))
    network.load_state_dict(torch.load(weights_path, map_location=device, weights_only=True))
    network.to(device).eval()
    mean = torch.tensor(info.get("mean", CIFAR10_MEAN), device=device).view(1, 3, 1, 1)
    std = torch.tensor(info.get("std", CIFAR10_STD), device=device).view(1, 3, 1, 1)
    return LoadedModel(network, device, class_names, mean, std)


def _media_type(header) -> str:
    return (header or "").split(";")[0].strip().lower()


def _decode_image(body: bytes, content_type: str) -> Images:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InvalidInputError(f"The {content_type} image is {image.width}x{image.height} pixels; "
                                        f"send at most {MAX_IMAGE_PIXELS} pixels (CIFAR-10 images are 32x32).")
            image.load()  # decode now, so a truncated file fails here rather than later
            rgb = image.convert("RGB")
    except InvalidInputError:
        raise
    # ImportError: a library that patches Image.open (ultralytics does) may try an optional decoder it
    # lacks (pi_heif) on a body no installed decoder reads; that body is as unreadable as any other
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError, Image.DecompressionBombError) as error:
        reason = ("not an image format PIL recognises" if isinstance(error, (UnidentifiedImageError, ImportError))
                  else str(error))
        raise InvalidInputError(f"The body is not a readable {content_type} image ({reason}); send a complete PNG "
                                f"or JPEG file, or use {NPY} or {JSON} for raw pixels.") from error
    if rgb.size != (INPUT_SIZE, INPUT_SIZE):
        rgb = rgb.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
    return Images(pixels.contiguous(), single=True)


def pixels_from_array(array: np.ndarray, source: str) -> Images:
    """HxWx3, 3xHxW, NxHxWx3 or Nx3xHxW numbers (resized to 32x32) -> Images; else InvalidInputError."""
    shapes = "HxWx3 or 3xHxW for one image, NxHxWx3 or Nx3xHxW for a batch"
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidInputError(f"{source} must hold numbers (uint8 0-255 or float 0-1 pixels), got dtype {array.dtype}.")
    if array.ndim not in (3, 4):
        raise InvalidInputError(f"{source} has shape {list(array.shape)}; expected {shapes}.")
    single = array.ndim == 3
    batch = array[None] if single else array
    if batch.shape[-1] == 3:
        batch = batch.transpose(0, 3, 1, 2)
    elif batch.shape[1] != 3:
        raise InvalidInputError(f"{source} has shape {list(array.shape)}; expected {shapes}.")
    if batch.size == 0:
        raise InvalidInputError(f"{source} holds no pixels (shape {list(array.shape)}); expected {shapes}.")
    values = batch.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise InvalidInputError(f"{source} has pixel values outside 0-255 (or NaN); send uint8 0-255 or float 0-1 pixels.")
    if np.issubdtype(array.dtype, np.integer) or values.max() > 1:
        values /= 255
    pixels = torch.from_numpy(np.ascontiguousarray(values))
    if pixels.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        pixels = F.interpolate(pixels, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return Images(pixels, single)


def _json_array(value, source: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise InvalidInputError(f"{source} is not a rectangular array of pixels ({error}).") from error


def _decode_json(body) -> Images:
    payload = parse_json_body(body, InvalidInputError)
    if isinstance(payload, list):
        return pixels_from_array(_json_array(payload, "the JSON array"), "the JSON array")
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list) or not payload["instances"]:
        raise InvalidInputError('Send JSON as {"instances": [image, ...]} with at least one image, or as a bare '
                                "nested list of pixels (HxWx3, or Nx32x32x3 for a batch).")
    images = []
    for index, instance in enumerate(payload["instances"]):
        source = f"instances[{index}]"
        image = pixels_from_array(_json_array(instance, source), source)
        if not image.single:
            raise InvalidInputError(f"{source} holds a batch; each instance must be one image (HxWx3 or 3xHxW).")
        images.append(image.pixels)
    return Images(torch.cat(images), single=False)


def _decode_npy(body) -> Images:
    if isinstance(body, str):
        body = body.encode("latin-1")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)  # never unpickle request bodies
    except Exception as error:  # np.load raises ValueError, OSError, EOFError, ... on bad bytes
        raise InvalidInputError(f"The body is not a .npy array ({error}); write it with numpy.save.") from error
    if not isinstance(array, np.ndarray):
        raise InvalidInputError("The body is an .npz archive; send a single array written with numpy.save.")
    return pixels_from_array(array, "the npy array")


def input_fn(request_body, request_content_type):
    """Decode a request body into a batch of [0, 1] pixels, remembering whether it was one image."""
    media_type = _media_type(request_content_type)
    if media_type in IMAGE_TYPES:
        return _decode_image(request_body.encode("latin-1") if isinstance(request_body, str) else bytes(request_body), media_type)
    if media_type == NPY:
        return _decode_npy(request_body)
    if media_type == JSON:
        return _decode_json(request_body)
    raise UnsupportedContentTypeError(f"Content type {request_content_type!r} is not supported; send one of {ACCEPTED}.")


def predict_fn(input_data, model):
    """Class probabilities for each image."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(input_data.pixels), PREDICT_CHUNK):
            x = input_data.pixels[start:start + PREDICT_CHUNK].to(model.device)
            logits = model.network((x - model.mean) / model.std)
            chunks.append(torch.softmax(logits.float(), dim=1).cpu())
    return Predictions(torch.cat(chunks).numpy(), model.class_names, input_data.single)


def _describe(probabilities: np.ndarray, class_names: list[str]) -> dict:
    index = int(probabilities.argmax())
    return {
        "predicted_class": class_names[index],
        "predicted_index": index,
        "probabilities": {name: float(p) for name, p in zip(class_names, probabilities)},
    }


def output_fn(prediction, accept):
    """JSON: one object for a single image, {"predictions": [...]} for a batch."""
    accepted = [_media_type(part) for part in (accept or "*/*").split(",")]
    if not any(kind in (JSON, "application/*", "*/*", "") for kind in accepted):
        raise UnsupportedAcceptError(f"Accept {accept!r} is not supported; this model answers {JSON}.")
    described = [_describe(p, prediction.class_names) for p in prediction.probabilities]
    return json.dumps(described[0] if prediction.single else {"predictions": described})
