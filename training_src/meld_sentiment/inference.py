"""Serve the MELD multimodal model: the handler functions of SageMaker's PyTorch inference container.

model.tar.gz holds model.pth, model_info.json, text_encoder/ (transformer config and tokenizer) and
code/ (this file, model.py, media.py, requirements.txt). The container (sagemaker-inference) calls
model_fn(model_dir) once, then for each request input_fn -> predict_fn -> output_fn.

Request (Content-Type: application/json), one utterance:
    {"text": "Oh my God, that's amazing!", "video_base64": "<the mp4 clip, base64>"}
    {"text": "...", "video_s3_uri": "s3://bucket/clips/dia0_utt3.mp4"}     (read with the endpoint's role)
or several as {"instances": [one such object, ...]}.
Response (Accept: application/json), per utterance:
    {"emotion": {"label": "joy", "probabilities": {"neutral": 0.05, "joy": 0.81, ...}},
     "sentiment": {"label": "positive", "probabilities": {"neutral": 0.1, "positive": 0.85, "negative": 0.05}},
     "warnings": []}
and {"predictions": [...]} for "instances".

A clip without an audio track is answered from the text and frames with a silent spectrogram, as in
training, and says so in "warnings". A clip ffmpeg cannot read, bad JSON, a missing field, bad
base64 or an S3 object that cannot be fetched raise InvalidInputError (400); another content type
415, another Accept 406: sagemaker-inference answers these with their status and message instead
of a 500, and the model server keeps serving.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from inference_errors import InferenceRequestError, UnsupportedAcceptError, UnsupportedContentTypeError, parse_json_body
from media import NO_AUDIO, MediaSettings, clip_features
from model import EMOTIONS, SENTIMENTS, build_for_serving


JSON = "application/json"
MAX_CLIP_BYTES = 100 * 1024 * 1024  # an S3 clip larger than this is refused (MELD's longest is a few MB)
MAX_INSTANCES = 32  # utterances per request


class InvalidInputError(InferenceRequestError):
    """The body, a field, or the clip it names cannot be used."""

    status_code = 400


@dataclass
class LoadedModel:
    network: torch.nn.Module
    tokenizer: object
    device: torch.device
    media: MediaSettings
    max_text_length: int
    emotions: list[str]
    sentiments: list[str]


@dataclass
class Utterance:
    text: str
    clip: bytes
    source: str  # where the clip came from, for error messages


@dataclass
class ParsedRequest:
    utterances: list[Utterance]
    single: bool  # one object in the request (answer with one object) rather than "instances"


def model_fn(model_dir):
    """Rebuild the trained architecture from model_info.json and text_encoder/, then load model.pth."""
    from transformers import AutoTokenizer

    directory = Path(model_dir)
    info_path, weights_path = directory / "model_info.json", directory / "model.pth"
    for path in (info_path, weights_path, directory / "text_encoder"):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: model.tar.gz must hold what train.py writes")
    info = json.loads(info_path.read_text())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = build_for_serving(str(directory / "text_encoder"), info)
    network.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    network.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory / "text_encoder"))
    return LoadedModel(network, tokenizer, device, MediaSettings(**info["media"]), info["max_text_length"],
                       list(info.get("emotions", EMOTIONS)), list(info.get("sentiments", SENTIMENTS)))


def _media_type(header) -> str:
    return (header or "").split(";")[0].strip().lower()


def _read_s3(uri: str) -> bytes:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InvalidInputError(f"video_s3_uri must look like s3://bucket/key.mp4, got {uri!r}")
    try:
        response = boto3.client("s3").get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        if response["ContentLength"] > MAX_CLIP_BYTES:
            raise InvalidInputError(f"{uri} is {response['ContentLength']} bytes; clips are limited to {MAX_CLIP_BYTES}")
        return response["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise InvalidInputError(f"cannot read {uri}: {code} ({error.response.get('Error', {}).get('Message', '')})") from error
    except BotoCoreError as error:
        raise InvalidInputError(f"cannot read {uri}: {error}") from error


def _utterance(item, where: str) -> Utterance:
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where} must be an object with \"text\" and \"video_base64\" or \"video_s3_uri\"")
    text = item.get("text")
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}.text must be the utterance as a string, got {type(text).__name__}")
    sources = [key for key in ("video_base64", "video_s3_uri") if item.get(key) is not None]
    if len(sources) != 1:
        raise InvalidInputError(f"{where} needs exactly one of video_base64 (the mp4 clip, base64) or video_s3_uri, "
                                f"got {' and '.join(sources) or 'neither'}")
    value = item[sources[0]]
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}.{sources[0]} must be a string")
    if sources[0] == "video_s3_uri":
        return Utterance(text, _read_s3(value), value)
    try:
        clip = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInputError(f"{where}.video_base64 is not valid base64 ({error})") from error
    if not clip:
        raise InvalidInputError(f"{where}.video_base64 is empty")
    return Utterance(text, clip, f"{where}.video_base64")


def input_fn(request_body, request_content_type):
    """Parse the JSON request and fetch each clip's bytes (decoded in predict_fn, with the model's settings)."""
    if _media_type(request_content_type) != JSON:
        raise UnsupportedContentTypeError(f"Content type {request_content_type!r} is not supported; send {JSON}.")
    payload = parse_json_body(request_body, InvalidInputError)
    if isinstance(payload, dict) and "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_INSTANCES:
            raise InvalidInputError(f"instances must be a list of 1 to {MAX_INSTANCES} utterances")
        return ParsedRequest([_utterance(item, f"instances[{i}]") for i, item in enumerate(instances)], single=False)
    return ParsedRequest([_utterance(payload, "the request")], single=True)


def _features(utterance: Utterance, media: MediaSettings):
    # ffmpeg reads mp4 from a seekable file (the index may sit at the end); the file goes when we are done
    with tempfile.NamedTemporaryFile(suffix=".mp4") as clip:
        clip.write(utterance.clip)
        clip.flush()
        features = clip_features(clip.name, media)
    if features.problem.startswith("unreadable"):
        reason = features.problem.removeprefix("unreadable: ")
        raise InvalidInputError(f"{utterance.source} is not a readable mp4 clip ({reason}).")
    return features


def probabilities(model, texts: list[str], features: list) -> dict[str, torch.Tensor]:
    """Emotion and sentiment probabilities ([len(texts), classes] each, on the CPU) of decoded utterances:
    what predict_fn answers from, and what evaluate.py scores a test set with."""
    tokens = model.tokenizer(list(texts), padding=True, truncation=True, max_length=model.max_text_length,
                             return_tensors="pt")
    inputs = [tokens["input_ids"], tokens["attention_mask"], torch.stack([f.frames for f in features]),
              torch.stack([f.spectrogram for f in features])]
    with torch.inference_mode():
        logits = model.network(*(x.to(model.device) for x in inputs))
    return {head: torch.softmax(logits[head].float(), dim=1).cpu() for head in ("emotion", "sentiment")}


def predict_fn(input_data, model):
    """Emotion and sentiment probabilities for each utterance, with warnings about its clip."""
    features = [_features(u, model.media) for u in input_data.utterances]
    probs = probabilities(model, [u.text for u in input_data.utterances], features)
    emotion, sentiment = probs["emotion"].tolist(), probs["sentiment"].tolist()
    answers = []
    for e, s, f in zip(emotion, sentiment, features):
        warnings = ["the clip has no audio track: answered from the text and frames"] if f.problem.startswith(NO_AUDIO) else []
        answers.append({"emotion": _labelled(e, model.emotions), "sentiment": _labelled(s, model.sentiments),
                        "warnings": warnings})
    return {"answers": answers, "single": input_data.single}


def _labelled(probabilities: list[float], names: list[str]) -> dict:
    best = max(range(len(names)), key=probabilities.__getitem__)
    return {"label": names[best], "probabilities": {name: float(p) for name, p in zip(names, probabilities)}}


def output_fn(prediction, accept):
    """JSON: one object for a single utterance, {"predictions": [...]} for "instances"."""
    accepted = [_media_type(part) for part in (accept or "*/*").split(",")]
    if not any(kind in (JSON, "application/*", "*/*", "") for kind in accepted):
        raise UnsupportedAcceptError(f"Accept {accept!r} is not supported; this model answers {JSON}.")
    answers = prediction["answers"]
    return json.dumps(answers[0] if prediction["single"] else {"predictions": answers})
