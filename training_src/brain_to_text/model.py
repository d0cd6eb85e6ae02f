"""The diphone decoder: day-specific input layers feeding a multi-layer GRU, read out for CTC.

Shared by train.py and inference.py, so both smooth, patch and decode exactly alike.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

BLANK = 0  # the CTC blank; diphone id 0 never labels a phoneme
# the benchmark's 41 phoneme classes: the blank, 39 ARPAbet phonemes, the word-boundary silence;
# a diphone id is 41 x previous phoneme + phoneme (previous 0 at a sentence's start), 1681 in all
PHONEMES = (
    "BLANK",
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH",
    "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH", "K",
    "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH",
    "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
    " | ",
)


class GRUDecoder(nn.Module):
    """x [batch, time, features] of the sessions day_idx [batch] -> logits [batch, time', n_classes].

    Each recording day gets its own affine input layer (initialised to the identity, Softsign after)
    that maps that day's drifting neural features into a shared space. With patch_size > 0 the GRU
    sees patch_size consecutive steps at once, every patch_stride steps (time' = output_lengths(time)).
    """

    def __init__(self, neural_dim: int, n_units: int, n_days: int, n_classes: int, *, rnn_dropout: float = 0.0,
                 input_dropout: float = 0.0, n_layers: int = 5, patch_size: int = 0, patch_stride: int = 0):
        super().__init__()
        self.neural_dim, self.n_units, self.n_days, self.n_classes = neural_dim, n_units, n_days, n_classes
        self.n_layers, self.patch_size, self.patch_stride = n_layers, patch_size, patch_stride
        # one parameter per day: a batch touches a few days, and the others get no gradient (and no update)
        self.day_weights = nn.ParameterList([nn.Parameter(torch.eye(neural_dim)) for _ in range(n_days)])
        self.day_biases = nn.ParameterList([nn.Parameter(torch.zeros(1, neural_dim)) for _ in range(n_days)])
        self.day_activation = nn.Softsign()
        self.day_dropout = nn.Dropout(input_dropout)
        input_size = neural_dim * patch_size if patch_size > 0 else neural_dim
        self.gru = nn.GRU(input_size, n_units, n_layers, dropout=rnn_dropout if n_layers > 1 else 0.0, batch_first=True)
        for name, param in self.gru.named_parameters():
            if "weight_hh" in name:
                nn.init.orthogonal_(param)
            elif "weight_ih" in name:
                nn.init.xavier_uniform_(param)
        self.out = nn.Linear(n_units, n_classes)
        nn.init.xavier_uniform_(self.out.weight)
        self.h0 = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(1, 1, n_units)))  # learnt initial state

    def output_lengths(self, n_time_steps: torch.Tensor) -> torch.Tensor:
        """How many logit frames a trial of n_time_steps yields (what CTC's input_lengths must be)."""
        if self.patch_size <= 0:
            return n_time_steps.to(torch.int64)
        return torch.div(n_time_steps - self.patch_size, self.patch_stride, rounding_mode="floor").to(torch.int64) + 1

    def day_layers(self, x: torch.Tensor, day_idx: torch.Tensor) -> torch.Tensor:
        """Each trial through its own day's affine layer: one matmul per day present, not a weight copy per trial."""
        days = day_idx.tolist()
        order = sorted(range(len(days)), key=days.__getitem__)
        parts, start = [], 0
        while start < len(order):
            day = days[order[start]]
            end = start
            while end < len(order) and days[order[end]] == day:
                end += 1
            rows = torch.tensor(order[start:end], device=x.device)
            parts.append(x[rows] @ self.day_weights[day] + self.day_biases[day])
            start = end
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse.to(x.device)]

    def forward(self, x: torch.Tensor, day_idx: torch.Tensor) -> torch.Tensor:
        x = self.day_dropout(self.day_activation(self.day_layers(x, day_idx)))
        if self.patch_size > 0:
            # [b, t, d] -> [b, patches, patch_size * d]: patch_size steps side by side, every patch_stride steps
            x = x.unfold(1, self.patch_size, self.patch_stride).permute(0, 1, 3, 2).flatten(2)
        states = self.h0.expand(self.n_layers, x.shape[0], self.n_units).contiguous()
        output, _ = self.gru(x, states)
        return self.out(output)


def gaussian_smooth(features: torch.Tensor, kernel_std: float, kernel_size: int) -> torch.Tensor:
    """Smooth [batch, time, features] along time with a normalised Gaussian ('same' length); std 0 = off."""
    if kernel_std <= 0:
        return features
    # beyond 4 std the weights vanish; a shorter kernel gives the same result at a fraction of the cost
    size = min(kernel_size, 2 * math.ceil(4 * kernel_std) + 1)
    positions = torch.arange(size, dtype=torch.float32, device=features.device) - (size - 1) / 2
    kernel = torch.exp(-0.5 * (positions / kernel_std) ** 2)
    kernel = (kernel / kernel.sum()).to(features.dtype)
    channels = features.shape[-1]
    x = features.transpose(1, 2)  # [b, d, t]
    left = (size - 1) // 2
    x = F.conv1d(F.pad(x, (left, size - 1 - left)), kernel.view(1, 1, -1).repeat(channels, 1, 1), groups=channels)
    return x.transpose(1, 2)


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per trial: argmax per frame, repeats merged, blanks dropped."""
    best = logits.argmax(-1).cpu()
    decoded = []
    for row, length in zip(best, lengths.tolist()):
        path = torch.unique_consecutive(row[: max(0, int(length))]).tolist()
        decoded.append([c for c in path if c != BLANK])
    return decoded


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between two id sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
