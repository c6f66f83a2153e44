"""Emoji names resolve offline and render from the installed colour emoji font."""

from __future__ import annotations

import numpy as np
import pytest

from tools import emoji as emoji_module
from tools.emoji import emoji_available, emoji_char, emoji_font, emoji_fonts, emoji_image


def test_a_renderer_is_available() -> None:
    assert emoji_available() is None
    font = emoji_font()
    assert font is not None and font.licence
    assert font == emoji_fonts()[0]


@pytest.mark.parametrize("size", [17, 128, 256])
def test_known_name_renders_a_coloured_rgba_square(size: int) -> None:
    image = emoji_image("smiling_face_with_sunglasses", size)
    assert image.mode == "RGBA" and image.size == (size, size)
    pixels = np.asarray(image).reshape(-1, 4)
    opaque = pixels[pixels[:, 3] > 200, :3].astype(int)
    assert len(opaque) > 0.3 * size * size  # the face fills most of the square
    assert (pixels[:, 3] == 0).any()  # transparent around it
    if size >= 128:
        red, green, blue = np.median(opaque, axis=0)
        assert red > 150 and green > 110 and blue < 120  # a yellow face
        assert len(np.unique(opaque, axis=0)) > 20  # coloured, not a monochrome glyph


def test_names_in_every_spelling_give_the_same_picture() -> None:
    want = np.asarray(emoji_image("face_with_tears_of_joy", 64))
    for spelling in (":face_with_tears_of_joy:", "Face with tears of joy", "joy", "\U0001f602"):
        np.testing.assert_array_equal(np.asarray(emoji_image(spelling, 64)), want)
    other = np.asarray(emoji_image("grinning_face", 64))
    assert not np.array_equal(other, want)


def test_cldr_names_win_over_unicode_names() -> None:
    assert emoji_char("smiling_face_with_sunglasses") == "\U0001f60e"
    assert emoji_char("grinning_face") == "\U0001f600"
    # CLDR "grinning face with smiling eyes" is U+1F604; Unicode gives that name to U+1F601
    assert emoji_char("grinning_face_with_smiling_eyes") == "\U0001f604"
    assert emoji_char("beaming_face_with_smiling_eyes") == "\U0001f601"
    assert emoji_char("thumbs_up") == emoji_char(":+1:") == "\U0001f44d"
    assert emoji_char("upside-down face") == emoji_char("upside_down_face") == "\U0001f643"
    assert emoji_char("see_no_evil_monkey") == "\U0001f648"


def test_unknown_name_raises_with_suggestions() -> None:
    with pytest.raises(ValueError, match="smiling_face_with_sunglasses"):
        emoji_image("smiling_face_with_sunglases", 64)
    with pytest.raises(ValueError, match="unknown emoji name 'xyzzy'"):
        emoji_image("xyzzy", 64)
    with pytest.raises(ValueError, match="empty"):
        emoji_char("  ")


def test_glyph_missing_from_the_font_raises() -> None:
    with pytest.raises(ValueError, match="no glyph"):
        emoji_image("latin_capital_letter_a", 64)


def test_bad_sizes_raise() -> None:
    for size in (0, -3, 5000):
        with pytest.raises(ValueError, match="size"):
            emoji_image("grinning_face", size)


def test_returned_images_are_independent_copies() -> None:
    first = emoji_image("grinning_face", 32)
    first.paste((0, 0, 0, 0), (0, 0, 32, 32))
    assert np.asarray(emoji_image("grinning_face", 32))[..., 3].any()


def test_font_setting_that_points_nowhere_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(emoji_module.FONT_ENV, "/nonexistent/emoji.ttf")
    problem = emoji_available()
    assert problem is not None and "/nonexistent/emoji.ttf" in problem
    with pytest.raises(ValueError, match="not a file"):
        emoji_image("grinning_face", 32)
