"""Image edits driven by objects: Tag, ColorPop, BgBlur, Replace and Emoji."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter

from tools.base import Tool, ToolContext, tool
from tools.draw import draw_objects
from tools.errors import ToolInputError
from tools.masks import union_mask
from tools.types import Image, ObjectList


@tool(
    name="Tag",
    examples=("IMAGE0=Tag(image=IMAGE, object=OBJ1)",),
)
def tag(image: Image, object: ObjectList) -> Image:
    """Draw each object's box and label on the image.

    Args:
        image: the picture to annotate
        object: the objects to draw (their labels are written on the boxes)
    """
    return Image(draw_objects(image, object.on(image), masks=False), name=image.name)


def _region(ctx: ToolContext, image: Image, objects: ObjectList) -> np.ndarray:
    placed = list(objects.on(image))
    mask, sources = union_mask(image, placed, refine=ctx.option("masks", "grabcut", True))
    ctx.note(mask_sources=sources)
    return mask.array


def _feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soft 0..1 alpha from a boolean mask, so edits blend without a hard seam."""
    alpha = PILImage.fromarray(mask.astype(np.uint8) * 255)
    if radius > 0:
        alpha = alpha.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(alpha, dtype=np.float32)[..., None] / 255.0


@tool(
    name="ColorPop",
    examples=("IMAGE0=ColorPop(image=IMAGE, object=OBJ1)",),
)
def color_pop(ctx: ToolContext, image: Image, object: ObjectList) -> Image:
    """Keep the objects in colour and turn everything else grey.

    Args:
        image: the picture to edit
        object: the objects to keep in colour (masks are used; boxes are refined by GrabCut)
    """
    alpha = _feather(_region(ctx, image, object), 1.5)
    rgb = image.array.astype(np.float32)
    grey = np.asarray(image.pil.convert("L"), dtype=np.float32)[..., None].repeat(3, axis=2)
    out = rgb * alpha + grey * (1 - alpha)
    return Image(PILImage.fromarray(out.clip(0, 255).astype(np.uint8)), name=image.name)


@tool(
    name="BgBlur",
    aliases=("BackgroundBlur",),
    examples=("IMAGE0=BgBlur(image=IMAGE, object=OBJ0)",),
)
def bg_blur(ctx: ToolContext, image: Image, object: ObjectList, strength: float = 1.0) -> Image:
    """Blur the background, keeping the objects sharp.

    Args:
        image: the picture to edit
        object: the objects to keep sharp (masks are used; boxes are refined by GrabCut)
        strength: blur amount (1 is a strong portrait-style blur)
    """
    radius = max(1.0, min(image.size) / 40 * max(strength, 0.0))
    alpha = _feather(_region(ctx, image, object), 2.0)
    blurred = np.asarray(image.pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    out = image.array.astype(np.float32) * alpha + blurred * (1 - alpha)
    return Image(PILImage.fromarray(out.clip(0, 255).astype(np.uint8)), name=image.name)


class Replace(Tool):
    """Replace the objects with something else described by a prompt (inpainting). Without
    a diffusion model, OpenCV's classical inpainting fills the region from its surroundings
    and ignores the prompt; the trace says so."""

    name = "Replace"
    aliases = ("Inpaint",)
    examples = ("IMAGE0=Replace(image=IMAGE, object=OBJ1, prompt='lush green grass')",)
    requires = ("inpaint",)

    def run(self, ctx: ToolContext, image: Image, object: ObjectList, prompt: str) -> Image:
        """Args:
        image: the picture to edit
        object: the objects to replace (their masks, or boxes refined by GrabCut)
        prompt: what to put there
        """
        painter = ctx.model("inpaint")
        ctx.note(model=painter.spec.label(), device=painter.device, backend=painter.kind)
        if painter.kind != "diffusion":
            ctx.note(
                warning=f"classical inpainting ({painter.spec.label()}): the prompt is not used"
            )
        if not object:
            ctx.note(warning="no objects to replace: the image is unchanged")
            return image
        placed = list(object.on(image))
        mask, sources = union_mask(image, placed, refine=ctx.option("masks", "grabcut", True))
        ctx.note(mask_sources=sources)
        return painter.inpaint(image, mask, prompt, seed=ctx.option(self.name, "seed", 0))


class Emoji(Tool):
    """Cover each object with an emoji (e.g. 'smiling_face_with_sunglasses')."""

    name = "Emoji"
    examples = ("IMAGE0=Emoji(image=IMAGE, object=OBJ0, emoji='smiling_face_with_sunglasses')",)

    def run(self, image: Image, object: ObjectList, emoji: str) -> Image:
        """Args:
        image: the picture to edit
        object: the objects to cover (usually faces)
        emoji: the emoji's name or the emoji character itself
        """
        from tools.emoji import emoji_image

        try:
            glyph = emoji_image(emoji, 256)
        except ValueError as exc:
            raise ToolInputError(f"Emoji: {exc}") from None
        out = image.pil.copy()
        for obj in object.on(image):
            b = obj.box.clip(image.width, image.height)
            side = int(max(b.width, b.height) * 1.1)
            if side < 2:
                continue
            sticker = glyph.resize((side, side), PILImage.LANCZOS)
            cx, cy = b.center
            out.paste(sticker, (int(cx - side / 2), int(cy - side / 2)), sticker)
        return Image(out, name=image.name)

    def unavailable(self, ctx: ToolContext) -> str | None:
        from tools.emoji import emoji_available

        return emoji_available()
