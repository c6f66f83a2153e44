"""A small evaluation set the offline models can really answer, written deterministically:
photos with 0-3 faces to count (copies of the astronaut's face from scikit-image's sample
photos, pasted at fixed places on other sample photos — MTCNN counts them) and signs with
one rendered word to read (PP-OCR reads them). ``vischain eval offline`` writes it into
the evaluation folder and evaluates it; the README's table comes from that command.

The same call always writes the same pixels: placements come from a fixed table, fonts from
Pillow's bundled default, photos from scikit-image's data package.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from tools.convert import to_image

FACE_BOX = (150, 20, 290, 200)  # around the astronaut's face, with hair and chin
FACE_SIZE = 150
# (background, number of faces) and where each face goes (top-left corners)
FACES = [
    ("coffee", 0), ("chelsea", 0), ("rocket", 1), ("coffee", 1),
    ("chelsea", 2), ("coffee", 2), ("rocket", 3), ("coffee", 3),
]  # fmt: skip
SPOTS = [(20, 30), (220, 160), (420, 40)]
WORDS = ["OPEN", "EXIT", "HOTEL", "PIZZA", "GARDEN", "MUSEUM"]
COLOURS = [((255, 255, 255), (0, 0, 0)), ((20, 110, 50), (255, 255, 255)),
           ((200, 30, 30), (255, 255, 255))]  # fmt: skip
COUNT_QUESTION = "How many faces are in this photo?"
READ_QUESTION = "What does the sign say?"


def _faces_photo(background: str, count: int) -> PILImage.Image:
    canvas = to_image(f"sample:{background}").pil.resize((600, 400)).copy()
    face = to_image("sample:astronaut").pil.crop(FACE_BOX)
    face = face.resize((FACE_SIZE, round(FACE_SIZE * face.height / face.width)))
    for x, y in SPOTS[:count]:
        canvas.paste(face, (x, y))
    return canvas


def _sign(word: str, index: int) -> PILImage.Image:
    back, ink = COLOURS[index % len(COLOURS)]
    pil = PILImage.new("RGB", (640, 320), (235, 235, 230))
    draw = ImageDraw.Draw(pil)
    draw.rounded_rectangle((40, 60, 600, 260), 24, fill=back, outline=(60, 60, 60), width=6)
    font = ImageFont.load_default(size=96)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    at = (320 - (right - left) // 2 - left, 160 - (bottom - top) // 2 - top)
    draw.text(at, word, fill=ink, font=font)
    return pil


def write_offline_set(folder: str | Path) -> Path:
    """Write the images and ``items.jsonl`` into ``folder``; return the JSONL's path."""
    out = Path(folder)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (background, count) in enumerate(FACES):
        name = f"faces-{i:02d}.png"
        _faces_photo(background, count).save(out / "images" / name)
        rows.append({"id": f"faces-{i:02d}", "instruction": COUNT_QUESTION, "type": "count faces",
                     "image": f"images/{name}", "answer": str(count)})  # fmt: skip
    for i, word in enumerate(WORDS):
        name = f"sign-{i:02d}.png"
        _sign(word, i).save(out / "images" / name)
        rows.append({"id": f"sign-{i:02d}", "instruction": READ_QUESTION, "type": "read text",
                     "image": f"images/{name}", "answer": word})  # fmt: skip
    path = out / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
