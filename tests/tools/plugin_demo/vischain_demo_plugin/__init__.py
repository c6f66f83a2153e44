"""Two VisChain tools, as a third-party package would ship them."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from tools import Image, Tool, tool


@tool(name="Mirror", aliases=("Flip",), examples=["IMAGE0=Mirror(image=IMAGE)"])
def mirror(image: Image) -> Image:
    """Flip an image left to right.

    Args:
        image: the picture to flip
    """
    return Image(image.pil.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT))


class Brightness(Tool):
    """Mean brightness of an image, 0 (black) to 1 (white)."""

    name = "Brightness"
    examples = ("N=Brightness(image=IMAGE)",)

    def run(self, image: Image) -> float:
        """Args:
        image: the picture to measure
        """
        return float(np.asarray(image.pil.convert("L"), dtype=np.float32).mean() / 255.0)
