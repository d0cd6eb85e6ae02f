"""A small synthetic MELD in the real on-disk layout: the CSVs plus one short mp4 clip (with sound) per row.

    <out>/train/train_sent_emo.csv         <out>/train/train_splits/dia{D}_utt{U}.mp4
    <out>/validation/dev_sent_emo.csv      <out>/validation/dev_splits_complete/dia{D}_utt{U}.mp4

The CSVs have MELD's columns (Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID,
Utterance_ID, Season, Episode, StartTime, EndTime); emotions come in roughly MELD's imbalance
(about half neutral, few fear and disgust), with every emotion present in each split. Each
emotion has cues in all three modalities: its own phrases, a coloured shape of its own moving in
the frames, and a tone of its own in the sound (H.264 + AAC, encoded by the imageio-ffmpeg binary).
Surprise is positive or negative, as in MELD, and only the words tell which.

`clips_without_audio` and `unreadable_clips` damage that many training clips (no audio track; a
truncated file), as real MELD has a broken clip, to exercise how train.py copes. The same seed
writes the same bytes.

    python -m include.datasets.meld_sentiment data/meld --train-utterances 96 --validation-utterances 42
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
SENTIMENTS = ("neutral", "positive", "negative")
# roughly MELD's training shares
EMOTION_SHARE = {"neutral": 0.47, "joy": 0.17, "surprise": 0.12, "anger": 0.11, "sadness": 0.07, "fear": 0.03, "disgust": 0.03}
SENTIMENT_OF = {"neutral": "neutral", "joy": "positive", "sadness": "negative", "anger": "negative",
                "fear": "negative", "disgust": "negative"}  # surprise: either, drawn per utterance
# (RGB colour of the moving shape, pitch of the voice-like tone in Hz)
STYLE = {
    "neutral": ((150, 150, 150), 180.0),
    "joy": ((250, 210, 30), 520.0),
    "sadness": ((40, 70, 220), 140.0),
    "anger": ((230, 30, 30), 330.0),
    "surprise": ((240, 120, 240), 700.0),
    "fear": ((30, 200, 90), 880.0),
    "disgust": ((120, 90, 20), 260.0),
}
PHRASES = {
    "neutral": ["I'm going to the coffee house later.", "Where did you put the keys?", "It's on the table by the door.",
                "Okay, see you at seven.", "We need to talk about the apartment.", "He said he'd call back tomorrow."],
    "joy": ["This is the best day ever!", "I love it, thank you so much!", "Yay, we got the tickets!",
            "That's wonderful news!", "I'm so happy for you!", "Great, we're going to Vegas!"],
    "sadness": ["I miss her so much.", "I just feel so alone.", "It's over, she left me.",
                "Nobody came to my party.", "I lost my job today.", "I'm sorry, I can't stop crying."],
    "anger": ["Get out of my apartment!", "How dare you read my diary!", "I am so mad at you right now!",
              "Stop touching my stuff!", "That is completely unacceptable!", "You ate my sandwich?!"],
    "surprise:positive": ["Oh my God, you're getting married?!", "Wow, you bought me a car?!", "No way, you got the part?!"],
    "surprise:negative": ["What?! You lost the ring?!", "Oh no, the ceiling fell in?!", "Wait, you sold my couch?!"],
    "fear": ["I think there's someone in the hallway.", "Please don't leave me here alone.", "What was that noise?",
             "I'm terrified of the dentist."],
    "disgust": ["Ew, that's disgusting!", "Gross, is that a hair in my soup?", "Ugh, he licked the spoon!",
                "That smells horrible."],
}
SPEAKERS = ("Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross")
COLUMNS = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
           "Episode", "StartTime", "EndTime")
SPLITS = {"train": ("train_sent_emo.csv", "train_splits"), "validation": ("dev_sent_emo.csv", "dev_splits_complete")}

WIDTH, HEIGHT = 64, 36  # 16:9 like MELD's 1280x720, small enough to encode in a blink
FPS = 8
SAMPLE_RATE = 16000


def emotion_counts(total: int, minimum: int = 2) -> dict[str, int]:
    """How many utterances of each emotion: MELD's shares, at least `minimum` each, summing to `total`."""
    if total < minimum * len(EMOTIONS):
        raise ValueError(f"need at least {minimum * len(EMOTIONS)} utterances for {minimum} of each emotion, got {total}")
    counts = {e: max(minimum, int(round(share * total))) for e, share in EMOTION_SHARE.items()}
    counts["neutral"] += total - sum(counts.values())  # neutral absorbs the rounding, as the majority class
    return {e: counts[e] for e in EMOTIONS}


def render_frames(emotion: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n_frames, HEIGHT, WIDTH, 3]: a shape in the emotion's colour drifting over a noisy background."""
    colour, _ = STYLE[emotion]
    tint = rng.uniform(40, 110) + rng.uniform(-15, 15, size=3)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    radius = rng.uniform(7, 11)
    x0, y0 = rng.uniform(radius, WIDTH - radius), rng.uniform(radius, HEIGHT - radius)
    vx, vy = rng.uniform(-3, 3, size=2)
    shade = np.clip(np.asarray(colour, float) + rng.normal(0, 12, size=3), 0, 255)
    frames = np.empty((n_frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(n_frames):
        cx = np.clip(x0 + vx * t, radius, WIDTH - radius)
        cy = np.clip(y0 + vy * t, radius, HEIGHT - radius)
        image = np.broadcast_to(tint, (HEIGHT, WIDTH, 3)).copy()
        image[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2] = shade
        image += rng.normal(0, 8, size=image.shape)
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return frames


def render_audio(emotion: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """int16 mono samples at SAMPLE_RATE: a voice-like tone (pitch per emotion, two harmonics) in noise."""
    _, pitch = STYLE[emotion]
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = pitch * rng.uniform(0.95, 1.05) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))  # vibrato
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    envelope = np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)  # 50 ms fade in and out
    signal = 0.3 * voice * envelope + rng.normal(0, 0.02, size=t.shape)
    return np.clip(signal * 32767, -32768, 32767).astype(np.int16)


def encode_clip(path: Path, frames: np.ndarray, audio: np.ndarray | None) -> None:
    """Write an H.264 mp4 (with an AAC track when `audio` is given), bit-exact for the same inputs."""
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "pipe:0"]
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            with wave.open(str(wav), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(SAMPLE_RATE)
                out.writeframes(audio.tobytes())
            command += ["-i", str(wav), "-c:a", "aac", "-b:a", "32k", "-flags:a", "+bitexact"]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-threads", "1",
                    "-flags:v", "+bitexact", "-fflags", "+bitexact", "-map_metadata", "-1", "-movflags", "+faststart",
                    str(path)]
        result = subprocess.run(command, input=frames.tobytes(), capture_output=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg could not write {path}: {result.stderr.decode(errors='replace').strip()}")


def utterance_text(emotion: str, sentiment: str, rng: np.random.Generator) -> str:
    pool = PHRASES[f"surprise:{sentiment}" if emotion == "surprise" else emotion]
    text = pool[rng.integers(len(pool))]
    if rng.random() < 0.3:  # a name in front, as people talk in Friends
        first = text if text.startswith(("I ", "I'")) else f"{text[0].lower()}{text[1:]}"
        text = f"{SPEAKERS[rng.integers(len(SPEAKERS))]}, {first}"
    return text


def _timestamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _write_split(out: Path, split: str, total: int, rng: np.random.Generator, *, without_audio: int = 0,
                 unreadable: int = 0) -> None:
    csv_name, clip_dir = SPLITS[split]
    (out / clip_dir).mkdir(parents=True, exist_ok=True)
    emotions = [e for e, n in emotion_counts(total).items() for _ in range(n)]
    rng.shuffle(emotions)
    damaged = rng.choice(total, size=without_audio + unreadable, replace=False)
    no_audio_rows, broken_rows = set(damaged[:without_audio].tolist()), set(damaged[without_audio:].tolist())

    rows, dialogue, utterance, clock = [], 0, 0, 0.0
    dialogue_length = int(rng.integers(2, 6))
    for index, emotion in enumerate(emotions):
        if utterance == dialogue_length:
            dialogue, utterance, dialogue_length = dialogue + 1, 0, int(rng.integers(2, 6))
        sentiment = SENTIMENT_OF.get(emotion) or ("positive" if rng.random() < 0.5 else "negative")
        seconds = float(rng.uniform(1.0, 1.6))
        frames = render_frames(emotion, max(2, int(round(seconds * FPS))), rng)
        audio = render_audio(emotion, seconds, rng)
        path = out / clip_dir / f"dia{dialogue}_utt{utterance}.mp4"
        encode_clip(path, frames, None if index in no_audio_rows else audio)
        if index in broken_rows:  # cut before the index (moov atom): ffmpeg cannot open it
            path.write_bytes(path.read_bytes()[:64])
        rows.append({"Sr No.": index + 1, "Utterance": utterance_text(emotion, sentiment, rng),
                     "Speaker": SPEAKERS[rng.integers(len(SPEAKERS))], "Emotion": emotion, "Sentiment": sentiment,
                     "Dialogue_ID": dialogue, "Utterance_ID": utterance, "Season": 1 + dialogue % 9,
                     "Episode": 1 + dialogue % 23, "StartTime": _timestamp(clock), "EndTime": _timestamp(clock + seconds)})
        utterance += 1
        clock += seconds + 0.5
    with open(out / csv_name, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def generate(out_dir: str | Path, train_utterances: int = 96, validation_utterances: int = 42, seed: int = 0,
             clips_without_audio: int = 0, unreadable_clips: int = 0) -> Path:
    """Write the train/ and validation/ folders (CSV + clips) into `out_dir`; return it."""
    if clips_without_audio < 0 or unreadable_clips < 0 or clips_without_audio + unreadable_clips > train_utterances:
        raise ValueError(f"clips_without_audio ({clips_without_audio}) and unreadable_clips ({unreadable_clips}) must be "
                         f"0 or more and together at most train_utterances ({train_utterances})")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    _write_split(out / "train", "train", train_utterances, rng, without_audio=clips_without_audio,
                 unreadable=unreadable_clips)
    _write_split(out / "validation", "validation", validation_utterances, rng)
    return out


def sample_clips(n: int = 7, seed: int = 1) -> list[dict]:
    """`n` utterances cycling through the emotions, each with its mp4 clip's bytes, for smoke tests."""
    rng = np.random.default_rng(seed)
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            emotion = EMOTIONS[i % len(EMOTIONS)]
            sentiment = SENTIMENT_OF.get(emotion) or ("positive" if rng.random() < 0.5 else "negative")
            seconds = float(rng.uniform(1.0, 1.6))
            path = Path(tmp) / f"sample{i}.mp4"
            encode_clip(path, render_frames(emotion, int(round(seconds * FPS)), rng), render_audio(emotion, seconds, rng))
            samples.append({"emotion": emotion, "sentiment": sentiment, "text": utterance_text(emotion, sentiment, rng),
                            "clip": path.read_bytes()})
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write train/ and validation/ into (created if missing)")
    parser.add_argument("--train-utterances", type=int, default=96, help="rows (and clips) of train_sent_emo.csv")
    parser.add_argument("--validation-utterances", type=int, default=42, help="rows (and clips) of dev_sent_emo.csv")
    parser.add_argument("--clips-without-audio", type=int, default=0, help="training clips written without an audio track")
    parser.add_argument("--unreadable-clips", type=int, default=0, help="training clips truncated so no player can open them")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    args = parser.parse_args(argv)
    out = generate(args.out_dir, args.train_utterances, args.validation_utterances, args.seed,
                   args.clips_without_audio, args.unreadable_clips)
    print(f"wrote {args.train_utterances} training and {args.validation_utterances} validation utterances "
          f"(CSV + mp4 clips) in MELD's layout to {out}")


if __name__ == "__main__":
    main()
