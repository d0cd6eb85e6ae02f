"""Serve the vehicle-audio classifier: the handler functions of SageMaker's Hugging Face (PyTorch) inference container.

model.tar.gz holds the save_pretrained model and feature extractor, label_info.json, and code/
(this file, audio.py, requirements.txt). The container calls model_fn(model_dir) once, then for each
request input_fn(body, content_type) -> predict_fn(clip, model) -> output_fn(prediction, accept).

Request: one WAV file, Content-Type audio/wav (also audio/x-wav, audio/wave), at any sample rate,
mono or any number of channels (averaged into one), 8/16/24/32-bit PCM or float; resampled to
16 kHz and cut to the max_audio_length the model was trained with (label_info.json; 5 s by default).
Response (Accept application/json):
    {"label": "TireSkid", "confidence": 0.93, "probs": {"CollisionImminent": 0.01, "EmergencyBraking": 0.03, "Normal": 0.03, "TireSkid": 0.93}}
confidence is probs[label], the highest.

A body that is not a WAV file (or is empty, truncated, or silent of samples) raises
InvalidAudioError (400); another content type UnsupportedContentTypeError (415); another Accept
UnsupportedAcceptError (406). The toolkit answers these with their status_code and message
(ModelError to the caller), and the server keeps serving.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from audio import SAMPLING_RATE, AudioDecodeError, decode_wav
from inference_errors import InferenceRequestError, UnsupportedAcceptError, UnsupportedContentTypeError


JSON = "application/json"
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave")
DEFAULT_MAX_AUDIO_LENGTH = 80_000
# input_fn is not given the model, but need not decode more than the model will use: model_fn records
# the loaded model's limit here (one model per server process); predict_fn cuts again with its own.
_decode_limit: dict[str, int | None] = {"max_samples": None}


class InvalidAudioError(InferenceRequestError):
    """The body is not a readable WAV file with samples in it."""

    status_code = 400


@dataclass
class LoadedModel:
    network: torch.nn.Module
    feature_extractor: object
    labels: list[str]
    max_audio_length: int
    device: torch.device


@dataclass
class Clip:
    samples: np.ndarray  # 16 kHz mono float32
    sample_rate: int  # as sent
    channels: int


@dataclass
class Prediction:
    probabilities: np.ndarray  # [num_labels]
    labels: list[str]


def model_fn(model_dir):
    """Load the save_pretrained model (safetensors), its feature extractor and label_info.json."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    info_path = os.path.join(model_dir, "label_info.json")
    if not os.path.isfile(info_path):
        raise FileNotFoundError(f"{info_path} is missing: model.tar.gz must hold the label_info.json that train.py writes")
    with open(info_path) as f:
        info = json.load(f)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = Wav2Vec2ForSequenceClassification.from_pretrained(model_dir).to(device).eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_dir)
    labels = list(info["labels"])
    if network.config.num_labels != len(labels):
        raise ValueError(f"label_info.json names {len(labels)} labels but the model has {network.config.num_labels} outputs")
    max_audio_length = int(info.get("max_audio_length", DEFAULT_MAX_AUDIO_LENGTH))
    _decode_limit["max_samples"] = max_audio_length
    return LoadedModel(network, extractor, labels, max_audio_length, device)


def _media_type(header) -> str:
    return (header or "").split(";")[0].strip().lower()


def input_fn(request_body, request_content_type):
    """Decode one WAV body into 16 kHz mono samples; anything else is a client error."""
    media_type = _media_type(request_content_type)
    if media_type not in WAV_TYPES:
        raise UnsupportedContentTypeError(f"Content type {request_content_type!r} is not supported; send a WAV file "
                                          f"as {' or '.join(WAV_TYPES[:2])}.")
    body = request_body.encode("latin-1") if isinstance(request_body, str) else bytes(request_body or b"")
    if not body:
        raise InvalidAudioError("The body is empty; send one WAV file (audio/wav).")
    try:
        samples, rate, channels = decode_wav(body, max_samples=_decode_limit["max_samples"])
    except AudioDecodeError as error:
        raise InvalidAudioError(f"Cannot classify the request: {error}. Send one complete WAV file "
                                f"(PCM or float samples, any sample rate, mono or stereo).") from error
    return Clip(samples, rate, channels)


def predict_fn(input_data, model):
    """Class probabilities for one clip."""
    samples = input_data.samples[: model.max_audio_length]
    features = model.feature_extractor(samples, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    features = {key: value.to(model.device) for key, value in features.items()}
    with torch.inference_mode():
        logits = model.network(**features).logits
    probabilities = torch.softmax(logits.float(), dim=-1)[0].cpu().numpy()
    return Prediction(probabilities, model.labels)


def output_fn(prediction, accept):
    """{"label", "confidence", "probs": {label: p}} as JSON."""
    accepted = [_media_type(part) for part in (accept or "*/*").split(",")]
    if not any(kind in (JSON, "application/*", "*/*", "") for kind in accepted):
        raise UnsupportedAcceptError(f"Accept {accept!r} is not supported; this model answers {JSON}.")
    index = int(prediction.probabilities.argmax())
    answer = {
        "label": prediction.labels[index],
        "confidence": float(prediction.probabilities[index]),
        "probs": {label: float(p) for label, p in zip(prediction.labels, prediction.probabilities)},
    }
    return json.dumps(answer)
