"""The multimodal sentiment model: text, video and audio encoders, late fusion, emotion and sentiment heads.

    text  (BERT-family, transformers)      -> pooled [CLS] -> Linear -> hidden_size
    video (r3d_18 or a small Conv3d stack) -> pooled clip  -> Linear -> hidden_size
    audio (Conv1d over the log-mel bands)  -> pooled time  -> Linear -> hidden_size
    concat (3 x hidden_size) -> fusion MLP -> emotion head (7 MELD emotions), sentiment head (3)

Offline the text encoder is a small BertConfig and the video encoder the Conv3d stack, both trained
from scratch; on AWS they are pretrained (bert-base-uncased through from_pretrained, r3d_18 with
torchvision's Kinetics-400 weights) and usually frozen. Serving rebuilds the same architecture from
model_info.json and the saved text config (never downloading anything), then loads model.pth.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")  # MELD's Emotion column
SENTIMENTS = ("neutral", "positive", "negative")  # MELD's Sentiment column
# r3d_18's Kinetics-400 normalization, used for both video backbones so pretrained weights see what they expect
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)
VIDEO_BACKBONES = ("r3d_18", "conv3d")


@dataclass(frozen=True)
class ArchitectureSettings:
    """Everything besides the text encoder's own config that fixes the network's shape."""

    video_backbone: str = "r3d_18"
    video_channels: int = 16  # conv3d only: width of the first block (the last has 4x)
    audio_channels: int = 64  # Conv1d width (the second block has 2x)
    n_mels: int = 64
    hidden_size: int = 128  # each encoder's output, and half the fusion width
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


class TextEncoder(nn.Module):
    def __init__(self, transformer: nn.Module, hidden_size: int):
        super().__init__()
        self.transformer = transformer
        self.projection = nn.Sequential(nn.Linear(transformer.config.hidden_size, hidden_size), nn.ReLU())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        output = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        pooled = getattr(output, "pooler_output", None)  # BERT's tanh-pooled [CLS]; models without a pooler:
        if pooled is None:
            pooled = output.last_hidden_state[:, 0]  # the raw [CLS] vector
        return self.projection(pooled)


def _conv3d_stack(channels: int) -> tuple[nn.Module, int]:
    def block(c_in: int, c_out: int, kernel, pool) -> list[nn.Module]:
        padding = tuple(k // 2 for k in kernel)
        return [nn.Conv3d(c_in, c_out, kernel, padding=padding, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True), pool]

    layers = [*block(3, channels, (1, 3, 3), nn.MaxPool3d((1, 2, 2))),  # per-frame features first
              *block(channels, 2 * channels, (3, 3, 3), nn.MaxPool3d((1, 2, 2))),
              *block(2 * channels, 4 * channels, (3, 3, 3), nn.AdaptiveAvgPool3d(1)), nn.Flatten()]
    return nn.Sequential(*layers), 4 * channels


def _r3d_18(pretrained: bool) -> tuple[nn.Module, int]:
    from torchvision.models.video import R3D_18_Weights, r3d_18

    network = r3d_18(weights=R3D_18_Weights.KINETICS400_V1 if pretrained else None)
    features = network.fc.in_features
    network.fc = nn.Identity()
    return network, features


class VideoEncoder(nn.Module):
    """uint8 frames [B, T, H, W, 3] -> [B, hidden_size]."""

    def __init__(self, backbone: str, channels: int, hidden_size: int, dropout: float, pretrained: bool = False):
        super().__init__()
        if backbone not in VIDEO_BACKBONES:
            raise ValueError(f"unknown video backbone {backbone!r}; choose one of {', '.join(VIDEO_BACKBONES)}")
        self.backbone, features = _r3d_18(pretrained) if backbone == "r3d_18" else _conv3d_stack(channels)
        self.projection = nn.Sequential(nn.Linear(features, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        self.register_buffer("mean", torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(VIDEO_STD).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 4, 1, 2, 3).float().div(255)  # [B, 3, T, H, W]
        return self.projection(self.backbone((x - self.mean) / self.std))


class AudioEncoder(nn.Module):
    """Log-mel spectrogram [B, n_mels, time] -> [B, hidden_size]."""

    def __init__(self, n_mels: int, channels: int, hidden_size: int, dropout: float):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv1d(n_mels, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU(inplace=True), nn.MaxPool1d(2),
            nn.Conv1d(channels, 2 * channels, 3, padding=1), nn.BatchNorm1d(2 * channels), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        )
        self.projection = nn.Sequential(nn.Linear(2 * channels, hidden_size), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(spectrogram))


def _head(width: int, classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width // 4), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width // 4, classes))


class MultimodalSentimentModel(nn.Module):
    def __init__(self, text_transformer: nn.Module, arch: ArchitectureSettings, *, video_pretrained: bool = False):
        super().__init__()
        h = arch.hidden_size
        self.text_encoder = TextEncoder(text_transformer, h)
        self.video_encoder = VideoEncoder(arch.video_backbone, arch.video_channels, h, arch.dropout, video_pretrained)
        self.audio_encoder = AudioEncoder(arch.n_mels, arch.audio_channels, h, arch.dropout)
        self.fusion = nn.Sequential(nn.Linear(3 * h, 2 * h), nn.BatchNorm1d(2 * h), nn.ReLU(), nn.Dropout(arch.dropout))
        self.emotion_head = _head(2 * h, len(EMOTIONS), arch.dropout)
        self.sentiment_head = _head(2 * h, len(SENTIMENTS), arch.dropout)
        self.frozen: set[str] = set()

    def freeze(self, part: str) -> None:
        """Stop training a pretrained backbone ("text" or "video"); its projection still learns."""
        backbone = self.text_encoder.transformer if part == "text" else self.video_encoder.backbone
        backbone.requires_grad_(False)
        self.frozen.add(part)

    def train(self, mode: bool = True):
        super().train(mode)
        # a frozen backbone keeps its pretrained batch-norm statistics and skips dropout
        for part in self.frozen:
            (self.text_encoder.transformer if part == "text" else self.video_encoder.backbone).eval()
        return self

    def forward(self, input_ids, attention_mask, frames, spectrogram) -> dict[str, torch.Tensor]:
        fused = self.fusion(torch.cat([
            self.text_encoder(input_ids, attention_mask),
            self.video_encoder(frames),
            self.audio_encoder(spectrogram),
        ], dim=1))
        return {"emotion": self.emotion_head(fused), "sentiment": self.sentiment_head(fused)}

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part, as train.py logs them."""
        parts = {"text_encoder": self.text_encoder, "video_encoder": self.video_encoder,
                 "audio_encoder": self.audio_encoder, "fusion": self.fusion,
                 "emotion_head": self.emotion_head, "sentiment_head": self.sentiment_head}
        return {name: sum(p.numel() for p in part.parameters() if p.requires_grad) for name, part in parts.items()}


def small_bert_config(vocab_size: int, hidden_size: int, layers: int, max_length: int):
    """The from-scratch text encoder's config (offline runs): a BERT with few, narrow layers."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden_size // 32), intermediate_size=4 * hidden_size,
                      max_position_embeddings=max_length)


def build_for_serving(text_config_dir: str, info: dict) -> MultimodalSentimentModel:
    """The trained architecture with untrained weights, from model_info.json and the saved text config."""
    from transformers import AutoConfig, AutoModel

    transformer = AutoModel.from_config(AutoConfig.from_pretrained(text_config_dir))
    return MultimodalSentimentModel(transformer, ArchitectureSettings(**info["architecture"]))
