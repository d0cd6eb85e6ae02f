"""train.py of the MELD workload as SageMaker's training toolkit runs it (a subprocess with SM_* variables
and --flags), plus its settings, data reading, class weights and metrics in-process."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from include.datasets import meld_sentiment
from include.pipelines.config import load_workload
from tests.source_modules import import_source, with_shared_modules
from tests.unit.test_meld_sentiment_media import read_event_file

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "meld_sentiment"


def local_profile_flags(**overrides) -> list[str]:
    """The local profile's hyperparameters as the toolkit passes them: what the DAG's job really runs with."""
    values = {**load_workload("meld_sentiment", "local").training.hyperparameters, **overrides}
    return [part for name, value in values.items()
            for part in (f"--{name}", value if isinstance(value, str) else json.dumps(value))]


@pytest.fixture(scope="module")
def train_module():
    return import_source("train", SOURCE_DIR)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # the local profile's data set: 96 + 42 utterances, one training clip without audio and one unreadable
    kwargs = load_workload("meld_sentiment", "local").data.generator_kwargs
    return meld_sentiment.generate(tmp_path_factory.mktemp("meld"), **kwargs)


@pytest.fixture(scope="module")
def small_data_dir(tmp_path_factory):
    return meld_sentiment.generate(tmp_path_factory.mktemp("meld-small"), train_utterances=14, validation_utterances=14)


def run_training(job_dir: Path, data: Path, *flags: str) -> subprocess.CompletedProcess:
    """Run train.py in job_dir the way the toolkit does: SM_* paths, SAGEMAKER_BASE_DIR, flags as strings."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SM_CHANNEL_TRAIN": str(data / "train"),
        "SM_CHANNEL_VALIDATION": str(data / "validation"),
        "SM_MODEL_DIR": str(job_dir / "model"),
        "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
        "SM_NUM_GPUS": "0",
        "SAGEMAKER_BASE_DIR": str(job_dir),
        "OMP_NUM_THREADS": "1",  # as the local profile's Environment sets it
        "HF_HUB_OFFLINE": "1",  # nothing may be downloaded here
    }
    return subprocess.run([sys.executable, "train.py", *flags], cwd=SOURCE_DIR, env=with_shared_modules(env),
                          capture_output=True, text=True, timeout=600)


def metric_definitions() -> list:
    """SageMaker's MetricDefinitions of the job: the workload YAML's, the one place they are written."""
    return load_workload("meld_sentiment", "local").training.metric_definitions


def metric_values(log: str) -> dict[str, list[float]]:
    """What SageMaker's MetricDefinitions (the workload YAML's) extract from the log, line by line."""
    values = {}
    for line in log.splitlines():
        for definition in metric_definitions():
            match = re.search(definition.regex, line)
            if match:
                values.setdefault(definition.name, []).append(float(match.group(1)))
    return values


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    job_dir = tmp_path_factory.mktemp("job")
    result = run_training(job_dir, data_dir, *local_profile_flags())
    assert result.returncode == 0, result.stdout + result.stderr
    return job_dir, result.stdout


@pytest.mark.slow
def test_training_logs_one_metric_line_per_epoch(trained):
    job_dir, log = trained
    epoch_lines = [line for line in log.splitlines() if line.startswith("epoch=")]
    assert len(epoch_lines) == 4
    number = r"\d+\.\d{4}"
    line_format = (rf"epoch=\d+ train_loss={number} train_emotion_accuracy={number} train_sentiment_accuracy={number} "
                   rf"val_loss={number} val_emotion_accuracy={number} val_sentiment_accuracy={number} "
                   rf"val_emotion_weighted_f1={number} val_sentiment_weighted_f1={number} lr=\d+\.\d{{6}} epoch_seconds=\d+\.\d")
    assert all(re.fullmatch(line_format, line) for line in epoch_lines), epoch_lines

    assert [int(line.split()[0].removeprefix("epoch=")) for line in epoch_lines] == [1, 2, 3, 4]

    # every regex of the YAML reads the number train.py measured (metrics.json keeps them unrounded), once an epoch
    metrics = metric_values(log)
    measured = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())
    expected = {f"{part}:{key}": [entry[part][key] for entry in measured["history"]]
                for part, keys in (("train", ("loss", "emotion_accuracy", "sentiment_accuracy")),
                                   ("validation", ("loss", "emotion_accuracy", "sentiment_accuracy",
                                                   "emotion_weighted_f1", "sentiment_weighted_f1")))
                for key in keys}
    expected["best:validation:emotion_weighted_f1"] = [measured["value"]]
    assert {definition.name for definition in metric_definitions()} == set(expected)  # a new regex needs its value here
    assert metrics == {name: pytest.approx(values, abs=5e-5) for name, values in expected.items()}  # 4 decimals
    assert measured["value"] == max(expected["validation:emotion_weighted_f1"])


@pytest.mark.slow
def test_training_logs_parameters_per_encoder_and_class_weights(trained):
    _, log = trained
    counts = dict(re.findall(r"(\w+)=(\d+)", re.search(r"^trainable_parameters .*$", log, re.M).group(0)))
    parts = ("text_encoder", "video_encoder", "audio_encoder", "fusion", "emotion_head", "sentiment_head")
    assert all(int(counts[p]) > 0 for p in parts) and int(counts["total"]) == sum(int(counts[p]) for p in parts)
    weights = dict(re.findall(r"(\w+)=([0-9.]+)", re.search(r"^class_weights \(balanced\) emotion: (.*);", log, re.M).group(1)))
    # 96 utterances, 7 classes: neutral is the majority (weight < 1), fear and disgust the rarest
    assert float(weights["neutral"]) < 1 < float(weights["fear"]) == float(weights["disgust"])


@pytest.mark.slow
def test_damaged_clips_are_logged_by_name_counted_and_trained_around(trained, data_dir):
    _, log = trained
    assert "media train: clips=96 clips_without_audio=1 unreadable_clips=1" in log
    assert "media validation: clips=42 clips_without_audio=0 unreadable_clips=0" in log
    assert re.search(r"^warning: train clip dia\d+_utt\d+\.mp4: no audio track; using a silent spectrogram$", log, re.M)
    assert re.search(r"^warning: train clip dia\d+_utt\d+\.mp4: unreadable: .+; using black frames and a silent spectrogram$",
                     log, re.M)


@pytest.mark.slow
def test_training_learns_the_synthetic_emotions(trained):
    _, log = trained
    metrics = metric_values(log)
    gate = load_workload("meld_sentiment", "local").evaluation.threshold
    # always answering "neutral" scores ~0.30; measured 0.79-0.87 over training seeds 1, 2, 3 and 42
    assert metrics["best:validation:emotion_weighted_f1"][0] >= gate + 0.1, log
    assert metrics["train:loss"][-1] < metrics["train:loss"][0]


@pytest.mark.slow
def test_model_dir_holds_weights_info_text_encoder_and_serving_code(trained):
    import torch

    job_dir, log = trained
    model_dir = job_dir / "model"
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["inference.py", "inference_errors.py", "media.py", "model.py", "requirements.txt"]
    assert {"config.json", "tokenizer.json"} <= {p.name for p in (model_dir / "text_encoder").iterdir()}
    state = torch.load(model_dir / "model.pth", weights_only=True)
    assert any(key.startswith("text_encoder.transformer.") for key in state)
    info = json.loads((model_dir / "model_info.json").read_text())
    assert info["emotions"][:2] == ["neutral", "joy"] and len(info["emotions"]) == 7 and len(info["sentiments"]) == 3
    assert info["media"]["num_frames"] == 4 and info["architecture"]["video_backbone"] == "conv3d"
    assert f"best_val_emotion_weighted_f1={info['best_metric']['value']:.4f}" in log
    assert len(info["media_problems"]["train"]) == 2 and info["media_problems"]["validation"] == {}
    metrics = json.loads((job_dir / "output" / "data" / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_tensorboard_scalars_land_where_sagemaker_collects_them(trained):
    job_dir, log = trained
    files = list((job_dir / "output" / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoardOutputConfig.LocalPath
    assert len(files) == 1
    records = read_event_file(import_source("tensorboard_events", SOURCE_DIR), files[0])
    per_epoch = [r for r in records if r["scalars"]]
    assert [r["step"] for r in per_epoch] == [1, 2, 3, 4]
    logged = [float(v) for v in re.findall(r"\bval_emotion_weighted_f1=([0-9.]+)", log)]
    assert [r["scalars"]["f1/validation_emotion_weighted"] for r in per_epoch] == pytest.approx(logged, abs=1e-4)
    assert {"loss/train", "loss/validation", "accuracy/train_emotion", "accuracy/validation_sentiment"} <= set(per_epoch[0]["scalars"])


@pytest.mark.slow
def test_trained_model_serves_through_its_own_code(trained):
    """code/inference.py, as the inference container loads it from model.tar.gz, labels new utterances."""
    import base64

    job_dir, _ = trained
    inference = import_source("inference", job_dir / "model" / "code")
    model = inference.model_fn(str(job_dir / "model"))
    samples = meld_sentiment.sample_clips(14, seed=123)
    body = json.dumps({"instances": [{"text": s["text"], "video_base64": base64.b64encode(s["clip"]).decode()}
                                     for s in samples]})
    answer = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/json"), model),
                                            "application/json"))
    correct = sum(p["emotion"]["label"] == s["emotion"] for p, s in zip(answer["predictions"], samples))
    assert correct >= 8, answer  # chance is 2 of 14


@pytest.mark.slow
def test_the_same_seed_trains_the_same_model(tmp_path, data_dir, trained):
    """A second run of the same job writes the same weights and logs the same metrics: what the gate and the
    serving test judge does not depend on the process (the vocabulary once did) or on the machine's load."""
    import torch

    job_dir, log = trained
    result = run_training(tmp_path, data_dir, *local_profile_flags())
    assert result.returncode == 0, result.stdout + result.stderr
    first = torch.load(job_dir / "model" / "model.pth", weights_only=True)
    second = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    assert first.keys() == second.keys()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
    assert ((job_dir / "model" / "text_encoder" / "tokenizer.json").read_text()
            == (tmp_path / "model" / "text_encoder" / "tokenizer.json").read_text())

    def metrics(text: str) -> list[str]:  # the epoch lines without their timing
        return [re.sub(r" epoch_seconds=\S+", "", line) for line in text.splitlines() if line.startswith(("epoch=", "best_"))]

    assert metrics(result.stdout) == metrics(log)


@pytest.mark.slow
def test_too_many_unreadable_clips_fail_the_job_naming_them(tmp_path):
    data = meld_sentiment.generate(tmp_path / "data", train_utterances=14, validation_utterances=14, unreadable_clips=3)
    result = run_training(tmp_path / "job", data, *local_profile_flags(epochs=1))
    assert result.returncode != 0
    assert re.search(r"3 of 14 clips in the train channel cannot be read \(more than --max-unreadable-fraction 0\.05\), "
                     r"e\.g\. dia\d+_utt\d+\.mp4: no video stream \(not an mp4 clip, or a truncated one\)", result.stderr), result.stderr
    assert not (tmp_path / "job" / "model" / "model.pth").exists()


@pytest.mark.slow
def test_a_pretrained_text_encoder_loads_through_from_pretrained_and_stays_frozen(tmp_path, small_data_dir, train_module):
    """The AWS path (--text-model bert-base-uncased) with a BERT saved locally by save_pretrained instead of the hub."""
    import torch
    from transformers import BertModel

    tokenizer = train_module.scratch_tokenizer(["oh my god", "get out of my apartment"], 200, 32)
    bert = BertModel(import_source("model", SOURCE_DIR).small_bert_config(len(tokenizer), 32, 1, 32))
    bert.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    result = run_training(tmp_path / "job", small_data_dir, *local_profile_flags(
        epochs=1, **{"text-model": str(tmp_path / "bert"), "freeze-text-encoder": True, "max-text-length": 32}))
    assert result.returncode == 0, result.stdout + result.stderr
    text_trainable = int(re.search(r"text_encoder=(\d+)", result.stdout).group(1))
    assert text_trainable == 32 * 32 + 32  # the projection only: the transformer is frozen
    state = torch.load(tmp_path / "job" / "model" / "model.pth", weights_only=True)
    saved = bert.state_dict()
    assert all(torch.equal(state[f"text_encoder.transformer.{k}"], v) for k, v in saved.items() if v.is_floating_point())
    # serving rebuilds the same transformer from the config train.py saved, without the original folder
    inference = import_source("inference", tmp_path / "job" / "model" / "code")
    assert inference.model_fn(str(tmp_path / "job" / "model")).network.text_encoder.transformer.config.hidden_size == 32


@pytest.mark.slow
def test_bad_hyperparameters_fail_the_job_with_a_clear_message(tmp_path, small_data_dir):
    result = run_training(tmp_path, small_data_dir, "--epochs", "0", "--learning-rate", "-1", "--video-backbone", "vgg")
    assert result.returncode != 0
    assert "--epochs must be at least 1 (got 0)" in result.stderr
    assert "--learning-rate must be a positive number (got -1.0)" in result.stderr
    assert "--video-backbone must be one of r3d_18, conv3d (got 'vgg')" in result.stderr
    assert not (tmp_path / "model").exists()


# ---- in-process: settings, data, weights and metrics, no training


def test_flags_arrive_in_either_spelling_with_string_booleans(train_module, monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/data/train")
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", "/data/dev")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "/job")
    hp, paths = train_module.parse_args(["--epochs", "3", "--batch_size", "4", "--freeze-text-encoder", "False",
                                         "--video_pretrained", "true", "--_tuning_objective_metric", "x"])
    assert (hp.epochs, hp.batch_size, hp.freeze_text_encoder, hp.video_pretrained) == (3, 4, False, True)
    assert (hp.text_model, hp.class_weights, hp.num_frames) == ("bert-base-uncased", "balanced", 16)
    assert (paths.train, paths.validation) == ("/data/train", "/data/dev")
    assert hp.tensorboard_dir == "/job/output/tensorboard"


@pytest.mark.parametrize("argv, message", [
    (["--text-model", "scratch"], "--freeze-text-encoder true would keep a --text-model scratch encoder"),
    (["--video-backbone", "conv3d"], "--video-pretrained true needs --video-backbone r3d_18"),
    (["--video-pretrained", "false"], "--freeze-video-encoder true would keep an untrained video backbone"),
    (["--class-weights", "inverse"], "--class-weights must be 'balanced' or 'none'"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
])
def test_validation_names_the_hyperparameter_to_change(train_module, argv, message):
    hp, _ = train_module.parse_args(argv)
    with pytest.raises(ValueError, match=re.escape(message)):
        train_module.validate(hp)


def test_unknown_flags_are_refused(train_module, capsys):
    with pytest.raises(SystemExit):
        train_module.parse_args(["--epoch", "3"])
    assert "unrecognized hyperparameter(s) --epoch" in capsys.readouterr().err


def test_the_scratch_tokenizer_learns_the_same_vocabulary_every_time(train_module):
    """tokenizers' WordPieceTrainer numbered tokens in hash-map order: each run learnt another vocabulary, so the
    same seed trained another model (huggingface/tokenizers#1794). The order of the texts does not matter either."""
    texts = [f"{speaker}, {phrase}" for phrases in meld_sentiment.PHRASES.values() for phrase in phrases
             for speaker in meld_sentiment.SPEAKERS[:2]]
    tokenizers = [train_module.scratch_tokenizer(t, 2000, 32) for t in (texts, texts, texts, texts[::-1])]
    assert all(tokenizer.get_vocab() == tokenizers[0].get_vocab() for tokenizer in tokenizers[1:])
    # with room to spare every training word becomes a token of its own, as the trainer's vocabulary had it
    assert tokenizers[0].tokenize("Chandler, get out of my apartment!") == ["chandler", ",", "get", "out", "of", "my", "apartment", "!"]


def test_wordpiece_merges_the_most_frequent_pair_first_and_equal_counts_in_id_order(train_module):
    # the Hugging Face course's example: ##u ##g (20) first, then ##u ##n (16), h ##ug (15), p ##un (12),
    # then p ##ug and hug ##s tie at 5: p has the lower id
    vocabulary = train_module.learn_wordpiece_vocabulary({"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}, 100)
    assert vocabulary == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "g", "h", "n", "p", "s", "u",
                          "##g", "##n", "##s", "##u", "##ug", "##un", "hug", "pun", "pug", "hugs", "bun"]
    assert train_module.learn_wordpiece_vocabulary({"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}, 18)[-2:] == ["##ug", "##un"]


def test_balanced_class_weights_are_n_over_classes_times_count(train_module):
    weights = train_module.balanced_class_weights([0, 0, 0, 1], ("a", "b", "c"))
    assert weights.tolist() == pytest.approx([4 / (3 * 3), 4 / (3 * 1), 1.0])  # c is absent: 1.0


def test_weighted_f1_matches_scikit_learn(train_module):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    true, predicted = rng.integers(0, 7, 200), rng.integers(0, 6, 200)
    assert train_module.weighted_f1(true, predicted, 7) == pytest.approx(f1_score(true, predicted, average="weighted"))
    assert train_module.weighted_f1(true, true, 7) == pytest.approx(1.0)


def test_metric_definitions_fit_the_api():
    from include.aws_shapes import request_problems

    declared = [{"Name": m.name, "Regex": m.regex} for m in metric_definitions()]
    request = {
        "TrainingJobName": "meld", "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312",
                                   "TrainingInputMode": "File", "MetricDefinitions": declared},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    assert request_problems("sagemaker", "CreateTrainingJob", request) == []


def test_metric_regexes_tell_the_epoch_and_best_lines_apart():
    epoch = ("epoch=3 train_loss=2.1000 train_emotion_accuracy=0.5100 train_sentiment_accuracy=0.6000 val_loss=2.0000 "
             "val_emotion_accuracy=0.5500 val_sentiment_accuracy=0.6500 val_emotion_weighted_f1=0.5012 "
             "val_sentiment_weighted_f1=0.6400 lr=0.000500 epoch_seconds=312.4")
    assert metric_values(epoch + "\nbest_val_emotion_weighted_f1=0.5500") == {
        "train:loss": [2.1], "train:emotion_accuracy": [0.51], "train:sentiment_accuracy": [0.6], "validation:loss": [2.0],
        "validation:emotion_accuracy": [0.55], "validation:sentiment_accuracy": [0.65],
        "validation:emotion_weighted_f1": [0.5012], "validation:sentiment_weighted_f1": [0.64],
        "best:validation:emotion_weighted_f1": [0.55]}


def test_read_split_pairs_rows_with_clips_and_notes_missing_ones(train_module, small_data_dir, tmp_path):
    import shutil

    channel = tmp_path / "train"
    shutil.copytree(small_data_dir / "train", channel)
    missing = sorted((channel / "train_splits").iterdir())[0]
    missing.unlink()
    utterances, csv_path = train_module.read_split(str(channel))
    assert csv_path.name == "train_sent_emo.csv" and len(utterances) == 14
    assert [u.clip_name for u in utterances if not u.clip_path] == [missing.name]
    assert all(0 <= u.emotion < 7 and 0 <= u.sentiment < 3 and u.text for u in utterances)


def _write_csv(path: Path, header: str, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n")


@pytest.mark.parametrize("header, line, message", [
    ("Utterance,Emotion,Dialogue_ID,Utterance_ID", "hi,joy,0,0", "missing column(s) Sentiment"),
    ("Utterance,Emotion,Sentiment,Dialogue_ID,Utterance_ID", "hi,happy,positive,0,0",
     "train_sent_emo.csv line 2: Emotion is 'happy'; MELD's values are neutral, joy"),
    ("Utterance,Emotion,Sentiment,Dialogue_ID,Utterance_ID", "hi,joy,positive,zero,0",
     "line 2: Dialogue_ID and Utterance_ID must be integers"),
])
def test_a_malformed_csv_fails_naming_the_line_or_column(train_module, tmp_path, header, line, message):
    _write_csv(tmp_path / "train_sent_emo.csv", header, line)
    (tmp_path / "dia0_utt0.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(message)):
        train_module.read_split(str(tmp_path))


def test_a_channel_without_csv_or_clips_says_what_it_expected(train_module, tmp_path):
    (tmp_path / "readme.txt").write_text("wrong upload")
    with pytest.raises(FileNotFoundError, match=r"no MELD CSV \(\*_sent_emo.csv.*found \['readme.txt'\]"):
        train_module.read_split(str(tmp_path))
    _write_csv(tmp_path / "train_sent_emo.csv", "Utterance,Emotion,Sentiment,Dialogue_ID,Utterance_ID", "hi,joy,positive,0,0")
    with pytest.raises(FileNotFoundError, match=r"no .mp4 clips under the channel"):
        train_module.read_split(str(tmp_path))


def test_the_pretrained_video_backbone_loads_kinetics_weights(monkeypatch, tmp_path):
    """r3d_18's pretrained path, offline: torchvision finds the weights file in TORCH_HOME's cache as if downloaded."""
    import torch
    from torchvision.models.video import R3D_18_Weights, r3d_18

    model_module = import_source("model", SOURCE_DIR)
    reference = r3d_18().state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / Path(R3D_18_Weights.KINETICS400_V1.url).name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    encoder = model_module.VideoEncoder("r3d_18", channels=8, hidden_size=16, dropout=0.1, pretrained=True)
    loaded = encoder.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items() if k in loaded and not k.startswith("fc."))
    features = encoder(torch.randint(0, 255, (2, 4, 32, 32, 3), dtype=torch.uint8))
    assert features.shape == (2, 16)


def test_a_frozen_backbone_keeps_its_weights_and_statistics_while_the_rest_trains():
    from transformers import BertModel

    model_module = import_source("model", SOURCE_DIR)
    arch = model_module.ArchitectureSettings(video_backbone="conv3d", video_channels=4, audio_channels=4, n_mels=8, hidden_size=8)
    model = model_module.MultimodalSentimentModel(BertModel(model_module.small_bert_config(50, 32, 1, 16)), arch)
    before = model.parameter_counts()
    model.freeze("video")
    model.train()
    after = model.parameter_counts()
    projection = sum(p.numel() for p in model.video_encoder.projection.parameters())
    assert after["video_encoder"] == projection < before["video_encoder"]
    assert after["text_encoder"] == before["text_encoder"] and after["audio_encoder"] == before["audio_encoder"]
    assert not model.video_encoder.backbone.training and model.video_encoder.projection.training
    assert model.text_encoder.transformer.training
