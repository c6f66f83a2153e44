"""The built-in tools (one module per concern) and the registry that holds them."""

from __future__ import annotations

from tools.base import Tool

from .ask import PointAt, Vqa
from .crop import crop, crop_above, crop_around, crop_below, crop_left, crop_right
from .depth import Depth, DepthMap
from .edit import Emoji, Replace, bg_blur, color_pop, tag
from .locate import FaceDet, Loc
from .logic import count, eval_, result
from .match import Classify, Match, Select, Similarity
from .segment import Seg
from .text import List, LlmQuery, Ocr, SelectAnswer
from .video import frame, frames


def builtin_tools() -> list[Tool]:
    """Every built-in tool, in the order the planner's docs show them."""
    return [
        Loc(), FaceDet(), Seg(), Select(), Classify(), Vqa(), PointAt(), Depth(), DepthMap(),
        Ocr(), List(), Match(), Similarity(), LlmQuery(), SelectAnswer(),
        count, crop, crop_left, crop_right, crop_above, crop_below, crop_around, eval_, result,
        tag, color_pop, bg_blur, Replace(), Emoji(), frames, frame,
    ]  # fmt: skip


__all__ = ["builtin_tools"]
