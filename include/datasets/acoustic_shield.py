"""Small synthetic vehicle-audio clips in the audiofolder layout: `<split>/<Label>/*.wav`.

Four classes, each a sound of its own over road noise, at a random level:
- Normal: an engine hum (40-120 Hz and its harmonics) with a slow swell;
- TireSkid: a sustained squeal (0.9-1.8 kHz) with vibrato;
- EmergencyBraking: a tone sweeping down from 1.5-2.5 kHz, pulsed 10-16 times a second (ABS);
- CollisionImminent: alarm beeps (2.0-3.2 kHz, 4-8 a second) and an impact thud.
Like real recordings, the files differ in sample rate (8 to 48 kHz), channels (mono or stereo),
sample format (16-bit, 24-bit, float) and length, so a reader must resample and fold to mono.
Every sound stays below 3.5 kHz, so an 8 kHz file still holds it.

    python -m include.datasets.acoustic_shield data/acoustic_shield --clips-per-class 24 --validation-per-class 6
"""
from __future__ import annotations

import argparse
import io
import wave
from pathlib import Path

import numpy as np

LABELS = ("Normal", "TireSkid", "EmergencyBraking", "CollisionImminent")
SAMPLE_RATES = (8000, 16000, 22050, 44100, 48000)
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
DEFAULT_CLIPS_PER_CLASS = 24


def _engine(t: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    f0 = rng.uniform(40, 120)
    hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
    swell = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t)
    return level * hum * swell / 2.5


def _road_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import lfilter

    # brown-ish noise: white noise through a leaky integrator (y[i] = 0.98 y[i-1] + x[i]), so it does not drift
    noise = lfilter([1.0], [1.0, -0.98], rng.normal(0, 1, n))
    return noise / (np.abs(noise).max() + 1e-9)


def render(label: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One mono clip of class `label` as float samples in [-1, 1]."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; the classes are {', '.join(LABELS)}")
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n) / sample_rate
    duration = n / sample_rate
    if label == "Normal":
        signal = _engine(t, rng, 1.0)
    elif label == "TireSkid":
        f = rng.uniform(900, 1800)
        vibrato = 1 + 0.05 * np.sin(2 * np.pi * rng.uniform(5, 12) * t)
        phase = 2 * np.pi * np.cumsum(f * vibrato) / sample_rate
        signal = np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.3 * _engine(t, rng, 0.5)
    elif label == "EmergencyBraking":
        start, stop = rng.uniform(1500, 2500), rng.uniform(300, 600)
        f = start * (stop / start) ** (t / duration)  # exponential sweep down
        phase = 2 * np.pi * np.cumsum(f) / sample_rate
        pulses = 0.5 * (1 + np.sign(np.sin(2 * np.pi * rng.uniform(10, 16) * t)))
        signal = np.sin(phase) * (0.3 + 0.7 * pulses) + 0.3 * _engine(t, rng, 0.5)
    else:  # CollisionImminent
        f = rng.uniform(2000, 3200)
        beeps = (np.sin(2 * np.pi * rng.uniform(4, 8) * t + rng.uniform(0, np.pi)) > 0).astype(float)
        signal = np.sin(2 * np.pi * f * t) * beeps
        hit = int(rng.uniform(0.2, 0.8) * n)
        decay = np.exp(-np.arange(n - hit) / (0.05 * sample_rate))
        signal[hit:] += 1.5 * np.sin(2 * np.pi * rng.uniform(60, 100) * t[: n - hit]) * decay
    signal = signal / (np.abs(signal).max() + 1e-9)
    mixed = signal + rng.uniform(0.05, 0.25) * _road_noise(n, rng)
    return (rng.uniform(0.2, 0.9) * mixed / (np.abs(mixed).max() + 1e-9)).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Samples ([N] mono or [N, channels], floats in [-1, 1]) as the bytes of a WAV file.

    16-bit PCM is written by the standard library's wave module, so the smoke test's clips need no
    soundfile in Airflow; 24-bit and float (the data set has those too) by soundfile.
    """
    if subtype == "PCM_16":
        # scaled by 2**15, rounded down and clipped, as libsndfile converts (to within one step)
        pcm = np.clip(np.floor(np.asarray(samples, dtype=np.float64) * 32768), -32768, 32767).astype("<i2")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())
        return buffer.getvalue()
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype=subtype)
    return _without_peak_timestamp(buffer.getvalue())


def _without_peak_timestamp(data: bytes) -> bytes:
    """Zero the write time libsndfile stamps into a float WAV's PEAK chunk, so the same clip is the same bytes
    (and an unchanged data set is not uploaded again). PEAK: id, size, version, then the 4-byte timestamp."""
    at = data.find(b"PEAK", 12, 200)
    if at < 0:
        return data
    return data[: at + 12] + bytes(4) + data[at + 16:]


def _as_channels(mono: np.ndarray, channels: int, rng: np.random.Generator) -> np.ndarray:
    if channels == 1:
        return mono
    # stereo as a microphone pair hears it: the same sound, slightly different gain and delay
    delay = int(rng.integers(0, 8))
    right = np.concatenate([np.zeros(delay, dtype=mono.dtype), mono[: len(mono) - delay]]) * rng.uniform(0.7, 1.0)
    return np.stack([mono, right.astype(np.float32)], axis=1)


def sample_clip(label: str, *, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1,
                seed: int = 0, subtype: str = "PCM_16") -> bytes:
    """One WAV file of class `label`, for smoke tests and benchmarks."""
    rng = np.random.default_rng(seed)
    return wav_bytes(_as_channels(render(label, seconds, sample_rate, rng), channels, rng), sample_rate, subtype)


def _write_split(folder: Path, per_class: int, rng: np.random.Generator, min_seconds: float, max_seconds: float) -> int:
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            rate = int(rng.choice(SAMPLE_RATES))
            channels = int(rng.integers(1, 3))
            subtype = str(rng.choice(SUBTYPES))
            mono = render(label, rng.uniform(min_seconds, max_seconds), rate, rng)
            data = wav_bytes(_as_channels(mono, channels, rng), rate, subtype)
            (folder / label / f"{label.lower()}_{index:04d}.wav").write_bytes(data)
    return per_class * len(LABELS)


def generate(out_dir: str | Path, clips_per_class: int = DEFAULT_CLIPS_PER_CLASS, validation_per_class: int = 0,
             min_seconds: float = 0.8, max_seconds: float = 1.5, seed: int = 0) -> Path:
    """Write train/<Label>/*.wav (and validation/<Label>/*.wav when validation_per_class > 0); return out_dir."""
    if clips_per_class < 1 or validation_per_class < 0:
        raise ValueError(f"clips_per_class must be at least 1 and validation_per_class 0 or more, "
                         f"got {clips_per_class} and {validation_per_class}")
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    _write_split(out / "train", clips_per_class, rng, min_seconds, max_seconds)
    if validation_per_class:
        _write_split(out / "validation", validation_per_class, rng, min_seconds, max_seconds)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write train/ (and validation/) into; created if missing")
    parser.add_argument("--clips-per-class", type=int, default=DEFAULT_CLIPS_PER_CLASS, help="training clips per class")
    parser.add_argument("--validation-per-class", type=int, default=0,
                        help="validation clips per class (0: none; train.py then splits off 10%% itself)")
    parser.add_argument("--min-seconds", type=float, default=0.8, help="shortest clip")
    parser.add_argument("--max-seconds", type=float, default=1.5, help="longest clip")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.clips_per_class, args.validation_per_class, args.min_seconds, args.max_seconds, args.seed)
    print(f"wrote {args.clips_per_class * len(LABELS)} training and {args.validation_per_class * len(LABELS)} "
          f"validation clips ({', '.join(LABELS)}) in the audiofolder layout to {out}")


if __name__ == "__main__":
    main()
