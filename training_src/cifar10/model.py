"""ResNet-18 for 32x32 images, shared by train.py and inference.py (both ship in model.tar.gz's code/)."""
from __future__ import annotations

import torch.nn as nn
from torchvision.models import resnet18

ARCHITECTURE = "resnet18-cifar"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
INPUT_SIZE = 32
# per-channel statistics of the CIFAR-10 training set, on pixel values scaled to [0, 1]
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def build_model(num_classes: int = len(CLASS_NAMES)) -> nn.Module:
    """torchvision's resnet18 with a 3x3 stride-1 stem and no max-pool, so 32x32 inputs keep their detail."""
    # zero_init_residual: each block starts as the identity, which steadies the first steps of a short run
    model = resnet18(num_classes=num_classes, zero_init_residual=True)
    # the ImageNet stem (7x7 stride 2 + max-pool) would shrink 32x32 to 8x8 before the first block
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision inits its convs
    model.maxpool = nn.Identity()
    return model
