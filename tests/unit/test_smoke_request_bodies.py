"""The smoke tests' request bodies, built without an imaging or audio library (requirements.txt has
none), decode as the endpoints' libraries read them; the bodies that need one say what to install."""
from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image

from include.datasets.acoustic_shield import render, wav_bytes
from include.datasets.cifar10 import sample_images
from include.datasets.room_detection import sample_plans
from include.pipelines.smoke import png_bytes
from include.pipelines.smoke import room_detection as room_smoke


@pytest.mark.parametrize("image", [sample_images(1)[0][1], sample_plans(1, size=256)[0].image,
                                   np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)], ids=["cifar10", "floor-plan", "5x7"])
def test_png_bytes_decode_to_the_same_pixels(image):
    decoded = Image.open(io.BytesIO(png_bytes(image)))
    assert decoded.format == "PNG" and decoded.mode == "RGB"
    assert np.array_equal(np.asarray(decoded), image)


def test_png_bytes_refuses_an_image_that_is_not_rgb():
    with pytest.raises(ValueError, match="HxWx3"):
        png_bytes(np.zeros((4, 4, 4), dtype=np.uint8))


@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_wav_reads_back_as_libsndfile_writes_it(channels):
    mono = render("TireSkid", 0.25, 22050, np.random.default_rng(0))
    samples = mono if channels == 1 else np.stack([mono, -mono / 2], axis=1)
    ours = wav_bytes(samples, 22050)
    info = soundfile.info(io.BytesIO(ours))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, channels, "PCM_16", len(mono))
    reference = io.BytesIO()
    soundfile.write(reference, samples, 22050, format="WAV", subtype="PCM_16")
    read_ours, _ = soundfile.read(io.BytesIO(ours), dtype="int16")
    read_reference, _ = soundfile.read(io.BytesIO(reference.getvalue()), dtype="int16")
    assert np.abs(read_ours.astype(int) - read_reference).max() <= 1  # one step at most, on a rare rounding tie


def test_a_jpeg_without_pillow_says_which_package_to_add(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # as in an Airflow with requirements.txt only
    with pytest.raises(ModuleNotFoundError, match=r"room_detection smoke test \(its JPEG floor plan\) needs Pillow"):
        room_smoke.jpeg_bytes(sample_plans(1)[0].image)
