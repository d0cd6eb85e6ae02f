"""evaluate.py of the MELD workload as its Processing job runs it: unpacked from sourcedir.tar.gz (the workload's
files and the shared modules side by side), given model.tar.gz folders and the held-out split by arguments."""
import shutil
import tarfile

import pytest

from include.datasets import meld_sentiment
from include.pipelines.config import load_workload
from tests.unit.evaluate_checks import (check_a_cut_short_archive_fails_naming_it, check_only_evaluation_json,
                                        check_same_model_scores_the_same, evaluate, evaluate_without_champion,
                                        trained_model, unpack_sourcedir, value, weak_and_strong)
from tests.unit.test_meld_sentiment_training import SOURCE_DIR, local_profile_flags, run_training

pytestmark = pytest.mark.slow
METRIC = "weighted_f1"
METRICS = {METRIC, "accuracy", "sentiment_weighted_f1", "sentiment_accuracy"}


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    """/opt/ml/processing/input/code: sourcedir.tar.gz as the pipeline packs it, unpacked."""
    return unpack_sourcedir(SOURCE_DIR, tmp_path_factory.mktemp("code"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # the local profile's data set: 96 + 42 utterances (train/ and validation/ only)
    return meld_sentiment.generate(tmp_path_factory.mktemp("meld"), **load_workload("meld_sentiment", "local").data.generator_kwargs)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory, data_dir):
    """The held-out split: validation/, which train.py never trains on, with one clip damaged as real MELD has."""
    split = tmp_path_factory.mktemp("held-out") / "validation"
    shutil.copytree(data_dir / "validation", split)
    clip = split / "dev_splits_complete" / "dia0_utt0.mp4"
    clip.write_bytes(clip.read_bytes()[:64])  # 1 of 42 unreadable: under the 5% that fails the job
    return split


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """The local profile's model: 4 epochs, small encoders from scratch."""
    job_dir = tmp_path_factory.mktemp("trained")
    return trained_model(job_dir, run_training(job_dir, data_dir, *local_profile_flags()))


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A model trained with settings too weak to learn: one epoch on 14 utterances at a learning rate of 1e-9."""
    job_dir = tmp_path_factory.mktemp("untrained")
    data = meld_sentiment.generate(job_dir / "meld", train_utterances=14, validation_utterances=14, seed=5)
    flags = local_profile_flags(**{"epochs": 1, "learning-rate": 1e-9, "encoder-learning-rate": 1e-9})
    return trained_model(job_dir, run_training(job_dir, data, *flags))


@pytest.fixture(scope="module")
def without_champion(tmp_path_factory, code_dir, trained, test_split):
    return evaluate_without_champion(tmp_path_factory.mktemp("no-champion") / "evaluation", code_dir, trained, test_split)


def test_without_a_champion_only_evaluation_json_is_written(without_champion):
    # 42 samples: the damaged clip is scored too, from its text, as train.py validates
    report = check_only_evaluation_json(without_champion, METRICS, samples=42)
    assert 0.5 <= value(report, METRIC)  # the local gate; always answering "neutral" scores about 0.30
    assert "warning: test clip dia0_utt0.mp4: unreadable: " in without_champion[1].stdout


def test_the_same_model_as_challenger_and_champion_scores_the_same_every_run(code_dir, trained, test_split,
                                                                              without_champion, tmp_path):
    check_same_model_scores_the_same(code_dir, trained, test_split, without_champion, tmp_path)


def test_a_model_too_weak_to_learn_scores_below_a_trained_one(code_dir, trained, untrained, test_split, tmp_path):
    weak, strong = weak_and_strong(code_dir, untrained, trained, test_split, tmp_path, METRIC)
    # an untrained network answers (nearly) one emotion: at best "neutral" everywhere, about 0.30
    assert weak < 0.5 <= strong, (weak, strong)


def test_a_broken_archive_fails_naming_it(code_dir, trained, test_split, tmp_path):
    check_a_cut_short_archive_fails_naming_it(code_dir, trained, test_split, tmp_path, "challenger")

    other = tmp_path / "other"
    other.mkdir()
    with tarfile.open(other / "model.tar.gz", "w:gz") as tar:  # a readable archive, but not of this workload
        tar.add(test_split / "dev_sent_emo.csv", arcname="dev_sent_emo.csv")
    result = evaluate(code_dir, tmp_path / "evaluation", trained, test_split, champion=other)
    assert result.returncode == 1
    assert (f"EvaluationError: the champion archive {other / 'model.tar.gz'} holds no model_info.json at its top"
            in result.stderr), result.stderr


def test_test_data_in_another_layout_fails_naming_the_folder(code_dir, trained, test_split, tmp_path):
    clips_only = tmp_path / "clips-only"
    shutil.copytree(test_split / "dev_splits_complete", clips_only)
    result = evaluate(code_dir, tmp_path / "evaluation", trained, clips_only)
    assert result.returncode == 1
    assert "EvaluationError: --test-data: no MELD CSV (*_sent_emo.csv" in result.stderr and str(clips_only) in result.stderr


def test_mostly_unreadable_clips_fail_as_a_bad_upload(code_dir, trained, test_split, tmp_path):
    split = tmp_path / "damaged"
    rows = (test_split / "dev_sent_emo.csv").read_text().splitlines()[:4]  # the header and 3 utterances
    (split / "clips").mkdir(parents=True)
    (split / "dev_sent_emo.csv").write_text("\n".join(rows) + "\n")
    for name in ("dia0_utt0.mp4", "dia0_utt1.mp4", "dia0_utt2.mp4"):
        (split / "clips" / name).write_bytes(b"not an mp4")
    result = evaluate(code_dir, tmp_path / "evaluation", trained, split)
    assert result.returncode == 1
    assert "EvaluationError: 3 of 3 test clips cannot be read (more than 5%), e.g. dia0_utt0.mp4: " in result.stderr, result.stderr
