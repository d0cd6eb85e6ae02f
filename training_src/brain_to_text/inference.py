"""Decode Brain-to-Text trials with the trained diphone decoder: SageMaker's PyTorch inference handlers.

model.tar.gz holds checkpoint/best_checkpoint, checkpoint/args.yaml and code/ (this file, model.py,
dataset.py, requirements.txt). The container (sagemaker-inference) calls model_fn(model_dir) once,
then per request input_fn(body, content_type) -> predict_fn(trials, model) -> output_fn(result, accept).
A batch transform job sends each S3 object as one request.

Requests (Content-Type):
- application/x-hdf5: a session file in the benchmark's layout (data_test.hdf5 of a session the
  model was trained on); every trial_NNNN group is decoded. Labels, when the file has them, are
  read too and each trial is scored.
- application/json: {"session": "t15.2023.08.13", "input_features": [[512 floats], ...]} for one
  trial, or {"instances": [such objects]}; optional "seq_class_ids" (diphone ids) to score.
Responses (Accept): application/jsonlines (one JSON object per trial and line; what a transform
job's AssembleWith Line keeps), or application/json ({"predictions": [...]}; also for */*).
Each trial's object:
    {"session": ..., "trial": "trial_0003", "block_num": 3, "trial_num": 3, "n_time_steps": 52,
     "diphone_ids": [207, 1036, ...], "phonemes": ["N", "IY", "D", " | ", ...],
     "sentence_label": "Need water." (when the file has it),
     "label_length": 9, "edit_distance": 1, "der": 0.1111 (when labels were given)}
Decoding is greedy (best path, repeats merged, blanks dropped); each diphone id is 41 x previous
phoneme + phoneme, so "phonemes" lists the phoneme each decoded diphone ends in.

Bad requests raise InvalidInputError (400: unreadable file, a trial missing a field, a session the
model has no day layer for, wrong feature count), UnsupportedContentTypeError (415) or
UnsupportedAcceptError (406); sagemaker-inference answers those with their status code and
message, and the server keeps serving.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import yaml

from dataset import Trial, TrialDataError, TRIAL_KEY, read_trial
from inference_errors import InferenceRequestError, UnsupportedAcceptError, UnsupportedContentTypeError, parse_json_body
from model import PHONEMES, GRUDecoder, edit_distance, gaussian_smooth, greedy_decode


HDF5_TYPES = ("application/x-hdf5", "application/x-hdf")
JSON = "application/json"
JSON_LINES = "application/jsonlines"
ACCEPTED = f"{HDF5_TYPES[0]}, {JSON}"
DECODE_CHUNK = 32  # trials per forward pass, to bound memory on big session files


class InvalidInputError(InferenceRequestError):
    status_code = 400


@dataclass
class Decoder:
    network: GRUDecoder
    device: torch.device
    sessions: list[str]  # day-layer order
    n_features: int
    smooth_kernel_std: float
    smooth_kernel_size: int


def model_fn(model_dir):
    """Build the GRU decoder from checkpoint/args.yaml and load checkpoint/best_checkpoint (weights only)."""
    checkpoint_dir = os.path.join(model_dir, "checkpoint")
    args_path, weights_path = os.path.join(checkpoint_dir, "args.yaml"), os.path.join(checkpoint_dir, "best_checkpoint")
    for path in (args_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: model.tar.gz must hold the checkpoint/ folder train.py writes")
    with open(args_path) as f:
        args = yaml.safe_load(f)
    hp, sessions = args["hyperparameters"], list(args["sessions"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = GRUDecoder(hp["n_input_features"], hp["n_units"], len(sessions), hp["n_classes"], n_layers=hp["n_layers"],
                         patch_size=hp["patch_size"], patch_stride=hp["patch_stride"])
    state = torch.load(weights_path, map_location=device, weights_only=True)["model_state_dict"]
    network.load_state_dict(state)
    network.to(device).eval()
    return Decoder(network, device, sessions, hp["n_input_features"], hp["smooth_kernel_std"], hp["smooth_kernel_size"])


def _media_type(header) -> str:
    return (header or "").split(";")[0].strip().lower()


def _trials_from_hdf5(body: bytes) -> list[Trial]:
    import h5py

    try:
        handle = h5py.File(io.BytesIO(body), "r")
    except OSError as error:
        raise InvalidInputError(f"The body is not a readable HDF5 file ({error}); send a session file such as "
                                "data_test.hdf5, whole") from None
    with handle:
        keys = sorted(k for k in handle.keys() if TRIAL_KEY.fullmatch(k))
        if not keys:
            raise InvalidInputError("The HDF5 file holds no trial groups (trial_0000, trial_0001, ...)")
        try:
            return [read_trial(handle[key], f"request: {key}", labels=None) for key in keys]
        except TrialDataError as error:
            raise InvalidInputError(str(error)) from None


def _trial_from_json(item, index: int) -> Trial:
    where = f"instances[{index}]"
    if not isinstance(item, dict) or "input_features" not in item or "session" not in item:
        raise InvalidInputError(f'{where} must be an object with "session" and "input_features" ([time x features] numbers)')
    try:
        features = np.asarray(item["input_features"], dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{where}.input_features must be a [time x features] array of numbers ({error})") from None
    if features.ndim != 2 or len(features) == 0:
        raise InvalidInputError(f"{where}.input_features must be [time x features] with at least one step, got shape {features.shape}")
    labels = None
    if item.get("seq_class_ids") is not None:
        try:
            labels = np.asarray(item["seq_class_ids"], dtype=np.int64)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"{where}.seq_class_ids must be a list of diphone ids ({error})") from None
        if labels.ndim != 1 or len(labels) == 0 or labels.min() <= 0:
            raise InvalidInputError(f"{where}.seq_class_ids must be a non-empty list of diphone ids >= 1")
    return Trial(str(item["session"]), str(item.get("trial", f"instance_{index}")), features, labels,
                 int(item.get("block_num", 0)), int(item.get("trial_num", index)), item.get("sentence_label"))


def input_fn(input_data, content_type):
    """The request's trials: a whole HDF5 session file, or JSON objects with a session and features."""
    media_type = _media_type(content_type)
    body = input_data.encode() if isinstance(input_data, str) else bytes(input_data)
    if media_type in HDF5_TYPES:
        return _trials_from_hdf5(body)
    if media_type == JSON:
        payload = parse_json_body(body, InvalidInputError)
        items = payload["instances"] if isinstance(payload, dict) and "instances" in payload else [payload]
        if not isinstance(items, list) or not items:
            raise InvalidInputError('"instances" must be a non-empty list of trials')
        return [_trial_from_json(item, index) for index, item in enumerate(items)]
    raise UnsupportedContentTypeError(f"Content type {content_type!r} is not supported; send one of {ACCEPTED}")


@torch.no_grad()
def predict_fn(trials: list[Trial], decoder: Decoder) -> list[dict]:
    """Greedy CTC decode of every trial with its session's day layer; scored when it has labels."""
    day_of = {session: day for day, session in enumerate(decoder.sessions)}
    for trial in trials:
        if trial.session not in day_of:
            raise InvalidInputError(f"{trial.key}: session {trial.session!r} has no day layer in this model; it was "
                                    f"trained on {', '.join(decoder.sessions)}")
        if trial.input_features.shape[1] != decoder.n_features:
            raise InvalidInputError(f"{trial.key}: input_features has {trial.input_features.shape[1]} features per step, "
                                    f"the model takes {decoder.n_features}")
    results = []
    for start in range(0, len(trials), DECODE_CHUNK):
        chunk = trials[start:start + DECODE_CHUNK]
        longest = max(len(t.input_features) for t in chunk)
        features = np.zeros((len(chunk), longest, decoder.n_features), dtype=np.float32)
        for row, trial in enumerate(chunk):
            features[row, :len(trial.input_features)] = trial.input_features
        x = gaussian_smooth(torch.from_numpy(features).to(decoder.device), decoder.smooth_kernel_std, decoder.smooth_kernel_size)
        lengths = torch.tensor([len(t.input_features) for t in chunk], device=decoder.device)
        logits = decoder.network(x, torch.tensor([day_of[t.session] for t in chunk], device=decoder.device))
        for trial, diphones in zip(chunk, greedy_decode(logits.float(), decoder.network.output_lengths(lengths))):
            result = {"session": trial.session, "trial": trial.key, "block_num": trial.block_num,
                      "trial_num": trial.trial_num, "n_time_steps": len(trial.input_features),
                      "diphone_ids": diphones, "phonemes": [PHONEMES[d % len(PHONEMES)] for d in diphones]}
            if trial.sentence_label is not None:
                result["sentence_label"] = trial.sentence_label
            if trial.seq_class_ids is not None:
                distance = edit_distance(diphones, trial.seq_class_ids.tolist())
                result.update(label_length=len(trial.seq_class_ids), edit_distance=distance,
                              der=round(distance / len(trial.seq_class_ids), 4))
            results.append(result)
    return results


def output_fn(prediction: list[dict], accept):
    """JSON Lines (one trial per line) or JSON ({"predictions": [...]})."""
    media_type = _media_type(accept)
    if media_type == JSON_LINES:
        return "".join(json.dumps(p) + "\n" for p in prediction), JSON_LINES
    if media_type in ("", "*/*", JSON):
        return json.dumps({"predictions": prediction}), JSON
    raise UnsupportedAcceptError(f"Accept {accept!r} is not supported; ask for {JSON_LINES} or {JSON}")
