"""Where backend tests load models, and the noise pictures they feed them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from tools.backends import Placement
from tools.types import Image

CPU = Placement("cpu", torch.float32)


def noise_image(seed: int, width: int = 32, height: int = 32) -> Image:
    """A ``width``×``height`` RGB picture of uniform noise, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return Image(PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
