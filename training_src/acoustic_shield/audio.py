"""WAV decoding shared by train.py and inference.py: any sample rate and channel count -> 16 kHz mono float32.

Both sides must turn a file into samples the same way, or the endpoint would see different audio
than the model trained on; so this one module is copied into model.tar.gz's code/ beside inference.py.
"""
from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16_000  # what Wav2Vec2 (facebook/wav2vec2-base) was pre-trained on
MAX_RESAMPLE_FACTOR = 1000  # up/down factors above this are approximated (an exact 16001 -> 16000 Hz needs huge filters)
_WAV_MAGIC = ((b"RIFF", b"WAVE"), (b"RIFX", b"WAVE"), (b"RF64", b"WAVE"), (b"BW64", b"WAVE"))


class AudioDecodeError(ValueError):
    """The bytes are not a readable WAV file, or hold no usable samples."""


def is_wav(data: bytes) -> bool:
    """True when `data` starts with a RIFF/RF64 WAVE header."""
    return len(data) >= 12 and any(data[:4] == riff and data[8:12] == wave for riff, wave in _WAV_MAGIC)


def resample(samples: np.ndarray, from_rate: int, to_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) of 1-D float samples; awkward ratios within 0.1% of exact."""
    if from_rate == to_rate:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(to_rate, from_rate)
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_FACTOR:
        ratio = ratio.limit_denominator(MAX_RESAMPLE_FACTOR)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32, copy=False)


def decode_wav(data: bytes | str | Path, *, max_samples: int | None = None) -> tuple[np.ndarray, int, int]:
    """WAV bytes (or a .wav path) -> (16 kHz mono float32 samples, original rate, original channels).

    Channels are averaged into one; with `max_samples`, only the first max_samples (at 16 kHz) are
    kept, and only that much of the file is resampled. Raises AudioDecodeError with the reason.
    """
    import soundfile

    if isinstance(data, (str, Path)):
        source, name = str(data), str(data)
        with open(source, "rb") as f:
            header = f.read(12)
    else:
        data = bytes(data)
        source, name, header = io.BytesIO(data), "the body", data[:12]
        if not data:
            raise AudioDecodeError("the body is empty")
    if not is_wav(header):
        raise AudioDecodeError(f"{name} is not a WAV file (no RIFF/WAVE header)")
    try:
        with soundfile.SoundFile(source) as wav:
            rate, channels = wav.samplerate, wav.channels
            frames = -1
            if max_samples is not None:  # read only what survives truncation, plus the resampler's margin
                frames = math.ceil(max_samples * rate / SAMPLING_RATE) + 64
            samples = wav.read(frames=frames, dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, EOFError) as error:  # LibsndfileError is a RuntimeError
        # libsndfile's own words, without the "Error opening <_io.BytesIO object at 0x...>:" prefix
        reason = getattr(error, "error_string", None) or str(error)
        raise AudioDecodeError(f"{name} is not a readable WAV file ({reason})") from error
    if samples.shape[0] == 0:
        raise AudioDecodeError(f"{name} holds no audio samples")
    if not np.isfinite(samples).all():
        raise AudioDecodeError(f"{name} holds samples that are NaN or infinite")
    mono = samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0]
    mono = resample(np.ascontiguousarray(mono), rate)
    if max_samples is not None:
        mono = mono[:max_samples]
    return mono, rate, channels
