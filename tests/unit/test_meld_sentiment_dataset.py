"""The synthetic MELD generator: MELD's CSV columns and file layout, real mp4 clips with sound, damage on request."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from include.datasets import meld_sentiment
from tests.source_modules import import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "meld_sentiment"
MELD_COLUMNS = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
                "Episode", "StartTime", "EndTime"]


@pytest.fixture(scope="module")
def media():
    return import_source("media", SOURCE_DIR)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return meld_sentiment.generate(tmp_path_factory.mktemp("meld"), train_utterances=21, validation_utterances=14,
                                   clips_without_audio=1, unreadable_clips=1)


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_layout_and_columns_are_meld_s(data_dir):
    train, dev = rows(data_dir / "train" / "train_sent_emo.csv"), rows(data_dir / "validation" / "dev_sent_emo.csv")
    assert len(train) == 21 and len(dev) == 14
    with open(data_dir / "train" / "train_sent_emo.csv", encoding="utf-8") as f:
        assert f.readline().strip().split(",") == MELD_COLUMNS
    for split, folder, table in (("train", "train_splits", train), ("validation", "dev_splits_complete", dev)):
        clips = sorted(p.name for p in (data_dir / split / folder).iterdir())
        assert clips == sorted(f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}.mp4" for r in table)
    # utterance ids count up from 0 within each dialogue, as in MELD
    for dialogue in {r["Dialogue_ID"] for r in train}:
        ids = [int(r["Utterance_ID"]) for r in train if r["Dialogue_ID"] == dialogue]
        assert ids == list(range(len(ids)))


def test_every_emotion_appears_with_meld_s_imbalance_and_sentiments(data_dir):
    train = rows(data_dir / "train" / "train_sent_emo.csv")
    counts = {e: sum(r["Emotion"] == e for r in train) for e in meld_sentiment.EMOTIONS}
    assert min(counts.values()) >= 2 and counts["neutral"] == max(counts.values())
    for r in train:
        expected = meld_sentiment.SENTIMENT_OF.get(r["Emotion"])
        assert r["Sentiment"] == expected if expected else r["Sentiment"] in ("positive", "negative")
    assert all(r["Utterance"] for r in train)


def test_emotion_counts_follow_meld_s_shares():
    counts = meld_sentiment.emotion_counts(200)
    assert sum(counts.values()) == 200 and counts["neutral"] > 80 and counts["fear"] >= 2
    with pytest.raises(ValueError, match="at least 14 utterances"):
        meld_sentiment.emotion_counts(10)


def test_clips_have_frames_and_sound_except_the_damaged_ones(data_dir, media):
    settings = media.MediaSettings(num_frames=4, frame_size=32, n_mels=32, audio_frames=50)
    problems = {}
    for clip in sorted((data_dir / "train" / "train_splits").iterdir()):
        features = media.clip_features(clip, settings)
        assert tuple(features.frames.shape) == (4, 32, 32, 3)
        problems[clip.name] = features.problem
        if not features.problem:
            assert features.frames.float().std() > 5 and features.spectrogram.abs().sum() > 0
    assert sorted(p.split(":")[0] for p in problems.values() if p) == ["no audio track", "unreadable"]
    for clip in (data_dir / "validation" / "dev_splits_complete").iterdir():
        assert media.clip_features(clip, settings).problem == ""


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    first = meld_sentiment.generate(tmp_path / "a", train_utterances=14, validation_utterances=14, seed=3)
    second = meld_sentiment.generate(tmp_path / "b", train_utterances=14, validation_utterances=14, seed=3)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 + 28
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_damage_beyond_the_training_set_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at most train_utterances"):
        meld_sentiment.generate(tmp_path, train_utterances=14, clips_without_audio=10, unreadable_clips=5)


def test_sample_clips_cycle_through_the_emotions(media):
    samples = meld_sentiment.sample_clips(8, seed=4)
    assert [s["emotion"] for s in samples] == [*meld_sentiment.EMOTIONS, "neutral"]
    assert all(s["clip"][4:8] == b"ftyp" and s["text"] for s in samples)  # an ISO media (mp4) file


def test_command_line_writes_the_set(tmp_path):
    result = subprocess.run([sys.executable, "-m", "include.datasets.meld_sentiment", str(tmp_path / "out"),
                             "--train-utterances", "14", "--validation-utterances", "14"],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert "wrote 14 training and 14 validation utterances" in result.stdout
    assert len(rows(tmp_path / "out" / "train" / "train_sent_emo.csv")) == 14
