"""Decode an utterance's mp4 clip into what the model reads: sampled video frames and a log-mel spectrogram.

ffmpeg comes from the imageio-ffmpeg wheel (a static binary, no system install); it runs as a
subprocess that pipes raw pixels and samples back. Inputs are read with the mp4 demuxer and the
`file` protocol only, so a crafted upload (an HLS playlist named .mp4, say) cannot make ffmpeg open
URLs or other files.

What a damaged clip gives, in training and serving alike:
- no audio track: a silent (all-zero) spectrogram, reported as problem "no audio track";
- an unreadable or missing file: black frames and a silent spectrogram, reported as "unreadable: <why>".
train.py counts and logs these (and fails when too many clips of a channel are unreadable);
inference.py answers 400 for an unreadable clip and adds a warning for a clip without audio.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

FFMPEG_TIMEOUT_S = 120  # a clip that takes longer to decode is treated as unreadable
NO_AUDIO = "no audio track"


class UnreadableClip(ValueError):
    """ffmpeg could not read a video stream from the file; the message says why."""


@dataclass(frozen=True)
class MediaSettings:
    """How clips become tensors; train.py stores these in model_info.json so serving decodes alike."""

    num_frames: int = 16  # frames sampled evenly over the clip
    frame_size: int = 112  # each frame resized to frame_size x frame_size (r3d_18 was trained on 112)
    sample_rate: int = 16000  # audio resampled to this, mono
    n_mels: int = 64  # mel bands
    audio_frames: int = 300  # spectrogram columns (10 ms hop: 300 = 3 s), padded with silence or cut
    n_fft: int = 400  # 25 ms windows at 16 kHz
    hop_length: int = 160  # 10 ms


@dataclass
class ClipFeatures:
    frames: torch.Tensor  # uint8 [num_frames, frame_size, frame_size, 3]
    spectrogram: torch.Tensor  # float32 [n_mels, audio_frames], log(1 + mel power); zeros = silence
    problem: str  # "" when both streams were read


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    import imageio_ffmpeg  # honours IMAGEIO_FFMPEG_EXE, else the binary inside the wheel

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(path: Path, *output_args: str) -> subprocess.CompletedProcess:
    command = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error",
               "-protocol_whitelist", "file", "-f", "mp4", "-i", str(path), *output_args, "pipe:1"]
    try:
        return subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UnreadableClip(f"decoding took longer than {FFMPEG_TIMEOUT_S} s") from None


def _failure(result: subprocess.CompletedProcess) -> UnreadableClip:
    stderr = result.stderr.decode("utf-8", "replace")
    if "matches no streams" in stderr:
        return UnreadableClip("no video stream (not an mp4 clip, or a truncated one)")
    lines = stderr.strip().splitlines()
    # "[in#0 @ 0x55d0c3a2] moov atom not found" -> "moov atom not found": the address says nothing to a reader
    return UnreadableClip(re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else f"ffmpeg exited with code {result.returncode}")


def read_frames(path: str | Path, num_frames: int, frame_size: int) -> np.ndarray:
    """`num_frames` frames spread evenly over the clip, as uint8 [num_frames, size, size, 3] RGB."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableClip("file not found")
    # scaling inside ffmpeg keeps memory small however large the source frames are
    result = _run_ffmpeg(path, "-map", "0:v:0", "-vf", f"scale={frame_size}:{frame_size}",
                         "-f", "rawvideo", "-pix_fmt", "rgb24")
    if result.returncode != 0:
        raise _failure(result)
    raw = result.stdout
    frame_bytes = frame_size * frame_size * 3
    count = len(raw) // frame_bytes
    if count == 0:
        raise UnreadableClip("the video stream holds no frames")
    frames = np.frombuffer(raw[:count * frame_bytes], dtype=np.uint8).reshape(count, frame_size, frame_size, 3)
    picks = np.linspace(0, count - 1, num_frames).round().astype(int)  # repeats frames of a short clip
    return frames[picks].copy()


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray | None:
    """The clip's first audio track as mono float32 samples in [-1, 1], or None when it has none."""
    # "0:a:0?" maps the audio track if there is one; without one ffmpeg has nothing to write and says so
    result = _run_ffmpeg(Path(path), "-map", "0:a:0?", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le")
    if result.returncode != 0:
        if b"does not contain any stream" in result.stderr:
            return None
        raise _failure(result)
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32) if result.stdout else None


@lru_cache(maxsize=4)
def _mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(bank.T.astype(np.float32))  # [n_mels, n_fft // 2 + 1]


def log_mel_spectrogram(samples: np.ndarray | None, settings: MediaSettings) -> torch.Tensor:
    """log(1 + mel power) of the samples, [n_mels, audio_frames]; None or silence gives zeros."""
    out = torch.zeros(settings.n_mels, settings.audio_frames)
    if samples is None or len(samples) == 0:
        return out
    waveform = torch.from_numpy(np.ascontiguousarray(samples))
    if len(waveform) < settings.n_fft:
        waveform = torch.nn.functional.pad(waveform, (0, settings.n_fft - len(waveform)))
    spectrum = torch.stft(waveform, settings.n_fft, settings.hop_length, window=torch.hann_window(settings.n_fft),
                          center=False, return_complex=True).abs().pow(2)
    mel = torch.log1p(_mel_filters(settings.n_fft, settings.n_mels, settings.sample_rate) @ spectrum)
    columns = min(mel.shape[1], settings.audio_frames)
    out[:, :columns] = mel[:, :columns]
    return out


def clip_features(path: str | Path, settings: MediaSettings) -> ClipFeatures:
    """Frames and spectrogram of one clip; a damaged clip gives zeros and says why in `problem`."""
    black = torch.zeros(settings.num_frames, settings.frame_size, settings.frame_size, 3, dtype=torch.uint8)
    try:
        frames = torch.from_numpy(read_frames(path, settings.num_frames, settings.frame_size))
    except UnreadableClip as error:
        return ClipFeatures(black, log_mel_spectrogram(None, settings), f"unreadable: {error}")
    try:
        samples = read_audio(path, settings.sample_rate)
    except UnreadableClip as error:  # the frames are fine: keep them, with silence for the broken track
        return ClipFeatures(frames, log_mel_spectrogram(None, settings), f"{NO_AUDIO} (unreadable: {error})")
    return ClipFeatures(frames, log_mel_spectrogram(samples, settings), "" if samples is not None else NO_AUDIO)
