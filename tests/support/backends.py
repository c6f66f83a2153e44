"""Where backend tests load models."""

from __future__ import annotations

import torch

from tools.backends import Placement

CPU = Placement("cpu", torch.float32)
