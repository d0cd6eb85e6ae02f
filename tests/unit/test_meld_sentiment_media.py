"""Clip decoding (media.py) and the TensorBoard event writer (tensorboard_events.py) of the MELD workload."""
import struct
from pathlib import Path

import numpy as np
import pytest

from include.datasets import meld_sentiment
from tests.source_modules import import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "meld_sentiment"
H, W = meld_sentiment.HEIGHT, meld_sentiment.WIDTH


@pytest.fixture(scope="module")
def media():
    return import_source("media", SOURCE_DIR)


@pytest.fixture(scope="module")
def events():
    return import_source("tensorboard_events", SOURCE_DIR)


def ramp_clip(path: Path, frames: int = 8, tone_hz: float | None = 1000.0) -> Path:
    """A clip whose frame t is uniformly grey at 30 * t, with a pure tone (or no audio track)."""
    pixels = np.stack([np.full((H, W, 3), 30 * t, np.uint8) for t in range(frames)])
    audio = None
    if tone_hz:
        t = np.arange(int(frames / meld_sentiment.FPS * meld_sentiment.SAMPLE_RATE)) / meld_sentiment.SAMPLE_RATE
        audio = (0.5 * np.sin(2 * np.pi * tone_hz * t) * 32767).astype(np.int16)
    meld_sentiment.encode_clip(path, pixels, audio)
    return path


def test_frames_are_sampled_evenly_over_the_clip(media, tmp_path):
    frames = media.read_frames(ramp_clip(tmp_path / "ramp.mp4"), num_frames=3, frame_size=16)
    assert frames.shape == (3, 16, 16, 3) and frames.dtype == np.uint8
    brightness = frames.reshape(3, -1).mean(axis=1)
    assert brightness == pytest.approx([0, 30 * 3.5, 30 * 7], abs=20)  # first, middle and last of 8 frames


def test_a_short_clip_repeats_frames_to_fill_the_count(media, tmp_path):
    frames = media.read_frames(ramp_clip(tmp_path / "short.mp4", frames=2), num_frames=5, frame_size=8)
    assert frames.shape == (5, 8, 8, 3)
    assert frames[0].mean() < frames[-1].mean()


def test_the_spectrogram_shows_the_tone_in_its_mel_band(media, tmp_path):
    settings = media.MediaSettings(num_frames=2, frame_size=8, n_mels=32, audio_frames=200)
    low = media.clip_features(ramp_clip(tmp_path / "low.mp4", tone_hz=300), settings)
    high = media.clip_features(ramp_clip(tmp_path / "high.mp4", tone_hz=3000), settings)
    assert low.problem == high.problem == ""
    low_band, high_band = low.spectrogram.sum(1).argmax().item(), high.spectrogram.sum(1).argmax().item()
    assert low_band < high_band
    # one second of sound fills 100 columns of 10 ms; the rest is silence, i.e. zeros
    assert low.spectrogram[:, 90:].abs().sum() > 0 and low.spectrogram[:, 110:].abs().sum() == 0


def test_a_clip_without_audio_gets_a_silent_spectrogram(media, tmp_path):
    features = media.clip_features(ramp_clip(tmp_path / "mute.mp4", tone_hz=None), media.MediaSettings(num_frames=4, frame_size=16))
    assert features.problem == media.NO_AUDIO
    assert features.spectrogram.abs().sum() == 0 and features.frames.float().mean() > 10


@pytest.mark.parametrize("content, reason", [
    (b"", "unreadable: moov atom not found"),
    (b"this is not a video at all", "unreadable: moov atom not found"),
    (b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n", ""),  # a playlist is not followed
])
def test_an_unreadable_clip_gets_black_frames_and_silence(media, tmp_path, content, reason):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    features = media.clip_features(path, media.MediaSettings(num_frames=4, frame_size=16, n_mels=8, audio_frames=10))
    assert features.problem.startswith("unreadable: ") and reason in features.problem
    assert features.frames.abs().sum() == 0 and features.spectrogram.abs().sum() == 0


def test_a_missing_clip_is_unreadable(media, tmp_path):
    assert media.clip_features(tmp_path / "nowhere.mp4", media.MediaSettings()).problem == "unreadable: file not found"


def test_a_truncated_generated_clip_is_unreadable(media, tmp_path):
    path = ramp_clip(tmp_path / "cut.mp4")
    path.write_bytes(path.read_bytes()[:64])
    assert media.clip_features(path, media.MediaSettings(num_frames=2, frame_size=8)).problem.startswith("unreadable")


# ---- TensorBoard event files


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def parse_fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, value) pairs of a protocol buffer message: varints, doubles, floats and bytes."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack("<d", data[pos:pos + 8])[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack("<f", data[pos:pos + 4])[0], pos + 4
        else:
            length, pos = read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        out.append((number, value))
    return out


def read_event_file(events, path: Path) -> list[dict]:
    """Each record's Event as {step, file_version?, scalars}, checking both CRCs as TensorBoard does."""
    data, pos, result = path.read_bytes(), 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == events.masked_crc32c(header)
        payload = data[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == events.masked_crc32c(payload)
        pos += 16 + length
        fields = parse_fields(payload)
        event = {"step": dict(fields).get(2, 0), "scalars": {}}
        for number, value in fields:
            if number == 3:
                event["file_version"] = value.decode()
            if number == 5:
                for _, raw_value in parse_fields(value):
                    parts = dict(parse_fields(raw_value))
                    event["scalars"][parts[1].decode()] = parts[2]
        result.append(event)
    return result


def test_crc32c_matches_the_castagnoli_check_value(events):
    assert events.crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert events.crc32c(b"") == 0


def test_scalar_writer_writes_records_tensorboard_can_read(events, tmp_path):
    writer = events.ScalarWriter(tmp_path / "tb")
    writer.add_scalars({"loss/train": 1.5, "accuracy/validation_emotion": 0.25}, step=1)
    writer.add_scalars({"loss/train": 0.75}, step=2)
    writer.close()
    assert writer.path.name.startswith("events.out.tfevents.")
    records = read_event_file(events, writer.path)
    assert records[0]["file_version"] == "brain.Event:2"
    assert [(r["step"], r["scalars"]) for r in records[1:]] == [
        (1, {"loss/train": 1.5, "accuracy/validation_emotion": 0.25}), (2, {"loss/train": 0.75})]
