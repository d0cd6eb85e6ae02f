"""The acoustic shield serving code (code/inference.py and audio.py), called in-process as the inference
toolkit calls it, and once through the local SageMaker's handler contract."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from include.datasets.acoustic_shield import LABELS, sample_clip, wav_bytes
from tests.source_modules import import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "acoustic_shield"
LABEL_ORDER = sorted(LABELS)  # train.py sorts the label folders
MAX_AUDIO_LENGTH = 16000


@pytest.fixture(scope="module")
def inference():
    return import_source("inference", SOURCE_DIR)


@pytest.fixture(scope="module")
def audio():
    return import_source("audio", SOURCE_DIR)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory as train.py writes it, with untrained weights: these tests check the handlers, not accuracy."""
    import torch

    train = import_source("train", SOURCE_DIR)
    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)  # the same untrained weights every run: an answer near a tie must not flip between runs
    model, extractor = train.build_model(train.OFFLINE_TINY, LABEL_ORDER)
    train.write_model_artifacts(directory, model, extractor, {"labels": LABEL_ORDER, "max_audio_length": MAX_AUDIO_LENGTH})
    return directory


@pytest.fixture(scope="module")
def loaded(inference, model_dir):
    return inference.model_fn(str(model_dir))


def classify(inference, loaded, body, content_type="audio/wav", accept="application/json"):
    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), loaded), accept))


def sine_wav(frequency: float, rate: int, seconds: float, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * frequency * t).astype(np.float32)
    return wav_bytes(np.stack([mono] * channels, axis=1) if channels > 1 else mono, rate, subtype)


# --- audio.py: any WAV -> 16 kHz mono ---------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_any_sample_rate_is_resampled_to_16_khz_keeping_the_pitch(audio, rate):
    samples, original_rate, channels = audio.decode_wav(sine_wav(1000, rate, 1.0))
    assert (original_rate, channels) == (rate, 1)
    assert abs(len(samples) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(len(samples), 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=2)


def test_stereo_is_folded_to_mono_by_averaging(audio):
    left = np.full(1600, 0.5, dtype=np.float32)
    samples, _, channels = audio.decode_wav(wav_bytes(np.stack([left, -left / 5], axis=1), 16000, "FLOAT"))
    assert channels == 2
    assert np.allclose(samples, 0.2)


def test_decoding_stops_at_max_samples(audio):
    samples, _, _ = audio.decode_wav(sine_wav(440, 44100, 3.0), max_samples=16000)
    assert len(samples) == 16000


def test_awkward_sample_rates_are_resampled_without_huge_filters(audio):
    samples, _, _ = audio.decode_wav(sine_wav(1000, 16001, 1.0))  # an exact 16000/16001 ratio would need a 160k-tap filter
    assert abs(len(samples) - 16000) <= 20


# --- the handlers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rate, channels, subtype", [(16000, 1, "PCM_16"), (44100, 2, "PCM_24"), (8000, 1, "FLOAT"),
                                                     (48000, 2, "PCM_32"), (22050, 1, "PCM_U8")])
def test_answers_the_documented_json_for_any_wav(inference, loaded, rate, channels, subtype):
    answer = classify(inference, loaded, sample_clip("TireSkid", sample_rate=rate, channels=channels, subtype=subtype))
    assert set(answer) == {"label", "confidence", "probs"}
    assert list(answer["probs"]) == LABEL_ORDER
    assert sum(answer["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert answer["label"] == max(answer["probs"], key=answer["probs"].get)
    assert answer["confidence"] == answer["probs"][answer["label"]]


@pytest.mark.parametrize("content_type", ["audio/wav", "audio/x-wav", "audio/wave", "Audio/WAV; codecs=1"])
def test_wav_content_types(inference, loaded, content_type):
    assert classify(inference, loaded, sample_clip("Normal"), content_type)["label"] in LABELS


def test_long_clips_are_cut_to_the_trained_length(inference, loaded):
    clip = inference.input_fn(sample_clip("Normal", seconds=4.0, sample_rate=44100), "audio/wav")
    assert len(clip.samples) <= MAX_AUDIO_LENGTH
    assert classify(inference, loaded, sample_clip("Normal", seconds=4.0))["label"] in LABELS


def test_the_same_audio_gets_the_same_answer_whatever_its_format(inference, loaded):
    mono16k = classify(inference, loaded, sample_clip("EmergencyBraking", sample_rate=16000, seed=4))
    stereo = classify(inference, loaded, sample_clip("EmergencyBraking", sample_rate=16000, channels=2, seed=4, subtype="FLOAT"))
    # the second channel is a delayed, quieter copy: folding to mono changes the samples only a little
    assert stereo["label"] == mono16k["label"]
    assert max(abs(stereo["probs"][label] - mono16k["probs"][label]) for label in LABEL_ORDER) < 0.01


@pytest.mark.parametrize("body, message", [
    (b"", "empty"),
    (b"this is a text file, not a recording", "not a WAV file"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", "not a readable WAV file"),  # header cut short
    (sample_clip("Normal")[:44], "no audio samples"),  # a complete header and no samples
    (b"OggS" + bytes(100), "not a WAV file"),  # another audio format is not accepted as WAV
])
def test_bodies_that_are_not_usable_wav_files_are_client_errors(inference, body, message):
    with pytest.raises(inference.InvalidAudioError, match=message) as caught:
        inference.input_fn(body, "audio/wav")
    assert caught.value.status_code == 400


def test_non_finite_samples_are_refused(inference):
    samples = np.zeros(1600, dtype=np.float32)
    samples[10] = np.nan
    with pytest.raises(inference.InvalidAudioError, match="NaN"):
        inference.input_fn(wav_bytes(samples, 16000, "FLOAT"), "audio/wav")


def test_other_content_types_are_415(inference):
    with pytest.raises(inference.UnsupportedContentTypeError, match="audio/wav") as caught:
        inference.input_fn(b"{}", "application/json")
    assert caught.value.status_code == 415


def test_other_accept_types_are_406(inference, loaded):
    prediction = inference.predict_fn(inference.input_fn(sample_clip("Normal"), "audio/wav"), loaded)
    with pytest.raises(inference.UnsupportedAcceptError) as caught:
        inference.output_fn(prediction, "text/csv")
    assert caught.value.status_code == 406
    assert json.loads(inference.output_fn(prediction, "application/json, text/csv"))["label"] in LABELS


def test_model_fn_needs_label_info(inference, model_dir, tmp_path):
    incomplete = tmp_path / "model"
    shutil.copytree(model_dir, incomplete)
    (incomplete / "label_info.json").unlink()
    with pytest.raises(FileNotFoundError, match="label_info.json"):
        inference.model_fn(str(incomplete))


def test_through_the_inference_toolkit_contract(model_dir):
    """code/inference.py as the local SageMaker's model server runs it: bad bodies get their status, good ones JSON."""
    from include.emulator.serving.handlers import InferenceHandlers

    handlers = InferenceHandlers(model_dir)
    code_modules = ("inference", "audio")
    saved_path, saved_modules = list(sys.path), {name: sys.modules.get(name) for name in code_modules}
    try:
        handlers.load()
        _exercise(handlers)
    finally:  # the toolkit puts code/ on sys.path and imports its modules: leave neither behind for other tests
        sys.path[:] = saved_path
        for name, module in saved_modules.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module


def _exercise(handlers) -> None:
    from include.emulator.serving.handlers import error_status

    body, content_type = handlers.invoke(sample_clip("CollisionImminent", sample_rate=48000), "audio/wav", "application/json")
    assert content_type == "application/json"
    assert json.loads(body)["label"] in LABELS
    for bad, status in ((b"", 400), (b"not a wav", 400)):
        with pytest.raises(Exception) as caught:
            handlers.invoke(bad, "audio/wav", "application/json")
        assert error_status(caught.value) == status
    with pytest.raises(Exception) as caught:
        handlers.invoke(sample_clip("Normal"), "image/png", "application/json")
    assert error_status(caught.value) == 415
    assert json.loads(handlers.invoke(sample_clip("Normal"), "audio/x-wav", None)[0])["label"] in LABELS
