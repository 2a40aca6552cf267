"""fgbench's own small convolutional networks, for tests, the quickstart and CIFAR-size images.

Decisions:

* The CIFAR ResNets (He et al. 2016, section 4.2: 3x3 stem, three stages of 16-32-64 channels,
  6n+2 layers) are built from torchvision's own ``BasicBlock`` and use torchvision's attribute
  names (``conv1``, ``bn1``, ``layer1..3``, ``fc``). Every ResNet option of the builder (norm
  swaps, MixStyle, freezing, zero-init) then works on them exactly as on torchvision's ResNets,
  and their state dicts look familiar.
* The down-sampling shortcut is a 1x1 convolution + BN (the paper's option B), not option A's
  zero-padded identity: it is what torchvision's blocks expect and costs a few thousand
  parameters. resnet20_cifar has 0.27 M parameters.
* ``small_cnn`` is the smallest thing that learns the synthetic fine-grained set quickly on two
  CPU cores: three conv-BN-ReLU stages, global average pooling, a linear classifier.
* ``toy_dilated`` is enhuiz's ``toy-dilated`` (src/models/toy.py, as read in the seeds' notes): four
  3x3 convolutions of 32 channels with dilation 1, 2, 4, 8 and padding equal to the dilation (the
  resolution is kept), each followed by BatchNorm2d and GELU, then global average pooling and a
  linear classifier. The convolutions keep PyTorch's default bias (nn.Conv2d's).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


class CifarResNet(nn.Module):
    """A CIFAR-style ResNet: 3x3 stride-1 stem, no max-pool, stages of 16/32/64 channels."""

    def __init__(self, blocks_per_stage: tuple[int, int, int], num_classes: int = 10, widths=(16, 32, 64)):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(widths[0], blocks_per_stage[0], stride=1)
        self.layer2 = self._make_layer(widths[1], blocks_per_stage[1], stride=2)
        self.layer3 = self._make_layer(widths[2], blocks_per_stage[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages (32, 64, 128 channels), global average pool, linear classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def stage(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(*stage(3, 32, True), *stage(32, 64, True), *stage(64, 128, False))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class ToyDilated(nn.Module):
    """enhuiz's toy-dilated: 4 x (3x3 conv of 32 channels, dilation 1/2/4/8, BN, GELU), avg-pool, fc."""

    def __init__(self, num_classes: int = 1000, width: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for d in dilations:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d), nn.BatchNorm2d(width), nn.GELU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def toy_dilated(num_classes: int) -> ToyDilated:
    return ToyDilated(num_classes)


def resnet8_cifar(num_classes: int) -> CifarResNet:
    return CifarResNet((1, 1, 1), num_classes)


def resnet20_cifar(num_classes: int) -> CifarResNet:
    return CifarResNet((3, 3, 3), num_classes)


def small_cnn(num_classes: int) -> SmallCNN:
    return SmallCNN(num_classes)
