"""Benchmark models, written here so the suite needs nothing but torch (torchvision is never imported).

- :func:`small_cnn`: a three-block CNN for 32x32x3 inputs (CIFAR-sized), 10 classes;
- :func:`resnet18`: a ResNet-18-like network (He et al. 2016, "Deep Residual Learning for Image
  Recognition") for 224x224x3 inputs: BasicBlocks (conv-bn-relu, conv-bn, residual add, relu), four
  stages of two blocks with 64, 128, 256, 512 channels, global average pooling, 1000 classes.

Both are randomly initialised from a fixed seed (their own generator, global RNG state untouched) and
returned in eval mode. Attribution cost does not depend on the weights' values, only on the architecture.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_SEED = 0


class SmallCNN(nn.Module):
    """conv(3->32)-relu-pool, conv(32->64)-relu-pool, conv(64->128)-relu-pool, linear(2048->256)-relu-linear(->10).

    Input: (batch, 3, 32, 32); output: (batch, n_classes) logits.
    """

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 256),
            nn.ReLU(),
            nn.Linear(256, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` (batch, 3, 32, 32)."""
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    The shortcut is the identity, or a strided 1x1 conv + bn when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Like(nn.Module):
    """ResNet-18 layout: stem (7x7/2 conv, bn, relu, 3x3/2 max pool), stages [2, 2, 2, 2] of BasicBlocks
    with 64, 128, 256, 512 channels, global average pool, linear head.

    Input: (batch, 3, 224, 224); output: (batch, n_classes) logits.
    """

    def __init__(self, n_classes: int = 1000, widths: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_channels = widths[0]
        for i, (width, n_blocks) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(in_channels, width, stride)]
            layers += [BasicBlock(width, width) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` (batch, 3, 224, 224)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _init_(model: nn.Module, seed: int) -> None:
    """Deterministic random init from ``seed`` with a private generator (global RNG untouched).

    Kaiming-normal convs and linears, small random batch-norm statistics and affine parameters (so
    batch norm is not the identity in eval mode).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-0.05, 0.05, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0, generator=generator)
                module.bias.uniform_(-0.1, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.8, 1.2, generator=generator)


def small_cnn(seed: int = DEFAULT_SEED) -> SmallCNN:
    """The small CNN (32x32x3 -> 10 classes), seeded random init, eval mode."""
    model = SmallCNN()
    _init_(model, seed)
    return model.eval()


def resnet18(seed: int = DEFAULT_SEED) -> ResNet18Like:
    """The ResNet-18-like network (224x224x3 -> 1000 classes), seeded random init, eval mode."""
    model = ResNet18Like()
    _init_(model, seed)
    return model.eval()
