"""The synthetic acoustic shield clips: the audiofolder layout, real WAV files of varied formats, reproducible."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from include.datasets import acoustic_shield
from include.datasets.acoustic_shield import LABELS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return acoustic_shield.generate(tmp_path_factory.mktemp("clips"), clips_per_class=6, validation_per_class=2)


def test_writes_one_folder_of_wav_files_per_label_and_split(data_dir):
    for split, per_class in (("train", 6), ("validation", 2)):
        assert sorted(p.name for p in (data_dir / split).iterdir()) == sorted(LABELS)
        for label in LABELS:
            files = sorted((data_dir / split / label).glob("*.wav"))
            assert len(files) == per_class, (split, label)


def test_files_vary_in_sample_rate_channels_and_format_like_real_recordings(data_dir):
    infos = [soundfile.info(str(path)) for path in data_dir.rglob("*.wav")]
    assert all(info.format == "WAV" for info in infos)
    assert len({info.samplerate for info in infos}) >= 3
    assert {info.channels for info in infos} == {1, 2}
    assert len({info.subtype for info in infos}) >= 2
    assert all(0.8 <= info.duration <= 1.5 for info in infos)


def test_samples_are_audible_and_never_clip(data_dir):
    for path in list(data_dir.rglob("*.wav"))[:12]:
        samples, _ = soundfile.read(str(path), dtype="float32")
        peak = np.abs(samples).max()
        assert 0.1 < peak <= 1.0, path


def test_classes_differ_where_their_sounds_do():
    """Spectral centroids: the engine hum sits low, the alarm beeps high; a classifier has something to learn."""
    def centroid(label):
        rng = np.random.default_rng(3)
        samples = acoustic_shield.render(label, 1.0, 16000, rng)
        spectrum = np.abs(np.fft.rfft(samples))
        return float((np.fft.rfftfreq(len(samples), 1 / 16000) * spectrum).sum() / spectrum.sum())

    assert centroid("Normal") < centroid("TireSkid") < centroid("CollisionImminent")


def test_the_same_seed_writes_the_same_files(tmp_path):
    first = acoustic_shield.generate(tmp_path / "a", clips_per_class=2, seed=5)
    second = acoustic_shield.generate(tmp_path / "b", clips_per_class=2, seed=5)
    other = acoustic_shield.generate(tmp_path / "c", clips_per_class=2, seed=6)
    files = sorted(p.relative_to(first) for p in first.rglob("*.wav"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.wav"))
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert any((first / f).read_bytes() != (other / f).read_bytes() for f in files)


def test_sample_clip_has_the_asked_format():
    data = acoustic_shield.sample_clip("TireSkid", seconds=0.5, sample_rate=44100, channels=2)
    samples, rate = soundfile.read(io.BytesIO(data))
    assert rate == 44100 and samples.shape == (22050, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"clips_per_class": 0}, "clips_per_class"),
    ({"validation_per_class": -1}, "validation_per_class"),
    ({"min_seconds": 2.0, "max_seconds": 1.0}, "min_seconds"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        acoustic_shield.generate(tmp_path, **kwargs)


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="Normal, TireSkid"):
        acoustic_shield.sample_clip("Honk")


def test_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "include.datasets.acoustic_shield", str(tmp_path), "--clips-per-class", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "4 training and 0 validation clips" in result.stdout
    assert len(list((tmp_path / "train").rglob("*.wav"))) == 4
