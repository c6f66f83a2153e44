"""Vision tools on the model layer: the seed programs end to end on tiny models, real
offline models on real photos, batching through the executor, and the chained patterns."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from orchestrator import Config, Orchestrator
from sandbox import as_number
from tests.support.scripted_llm import ScriptedLLM
from tests.support.vision_doubles import DecisiveClip, FixedPointer
from tools import Box, Image, ObjectList, PointList
from tools.convert import to_image

FACE = Box(170, 40, 270, 170)  # the astronaut's face


def coffee_pair() -> dict[str, str]:
    return {"LEFT": "sample:coffee", "RIGHT": "sample:chelsea"}


def test_nlvr_seed_program_runs_and_batches_six_vqa_calls_into_one(tiny: Orchestrator) -> None:
    program = """\
ANSWER0=Vqa(image=LEFT, question='How many people are in the image?')
ANSWER1=Vqa(image=RIGHT, question='How many people are in the image?')
ANSWER2=Vqa(image=LEFT, question='How many boats are in the image?')
ANSWER3=Vqa(image=RIGHT, question='How many boats are in the image?')
ANSWER4=Vqa(image=LEFT, question='Is it daytime?')
ANSWER5=Vqa(image=RIGHT, question='Is it daytime?')
ANSWER6=Eval('{ANSWER0} + {ANSWER1} == 6 and {ANSWER2} + {ANSWER3} == 2')
RESULT=ANSWER6
"""
    vlm = tiny.pool.get("vlm")
    before = vlm.stats["generate_calls"]
    result = tiny.execute(program, images=coffee_pair())
    assert result.ok, result.error
    assert isinstance(result.output, bool)
    assert all(isinstance(result.values[f"ANSWER{i}"], str) for i in range(6))
    assert vlm.stats["generate_calls"] - before == 1  # one batched generate, not six
    assert {result.trace.step(f"ANSWER{i}").batch_size for i in range(6)} == {6}


def test_vqa_budgets_tokens_by_the_kind_of_answer(tiny: Orchestrator, monkeypatch) -> None:
    """Yes/no, counting and naming questions get a few new tokens, open ones the full
    budget; all in one batch, each row stopping at its own budget."""
    vlm = tiny.pool.get("vlm")
    seen: list[list[int]] = []
    flags: list[list[bool]] = []
    answer = vlm.answer

    def spy(requests, *, max_new_tokens, numbers):
        seen.append(list(max_new_tokens))
        flags.append(list(numbers))
        return answer(requests, max_new_tokens=max_new_tokens, numbers=numbers)

    monkeypatch.setattr(vlm, "answer", spy)
    questions = ["Is the saucer white?", "How many spoons lie here?", "What colour is the rim?",
                 "What does the label on it say?"]  # asked nowhere else: no memo hits  # fmt: skip
    program = "\n".join(f"A{i}=Vqa(image=IMAGE, question='{q}')" for i, q in enumerate(questions))
    result = tiny.execute(program + "\nRESULT=A0", image="sample:coffee")
    assert result.ok, result.error
    assert seen == [[8, 10, 16, 24]]
    assert flags == [[None, "whole", None, None]]  # only the count is decoded, as digits
    assert all(isinstance(result.values[f"A{i}"], str) for i in range(4))
    assert as_number(result.values["A1"]) is not None


@pytest.mark.parametrize("constrained", [True, False])
def test_vqa_counts_are_numbers_that_eval_adds(
    tiny: Orchestrator, monkeypatch: pytest.MonkeyPatch, constrained: bool
) -> None:
    """A count asked of the random tiny VLM comes back as digits (its free answer is noise),
    so Eval adds two counts into a number; ``number_answers: false`` leaves them free."""
    monkeypatch.setitem(tiny.config.tools, "Vqa", {"number_answers": constrained})
    where = "" if constrained else " here"  # other questions: no memo hit across the cases
    program = f"""\
ANSWER0=Vqa(image=LEFT, question='How many wheels are in the left image{where}?')
ANSWER1=Vqa(image=RIGHT, question='How many wheels are in the right image{where}?')
ANSWER2=Eval('{{ANSWER0}} + {{ANSWER1}}')
RESULT=ANSWER2
"""
    result = tiny.execute(program, images=coffee_pair())
    assert result.ok, result.error
    counts = [as_number(result.values[f"ANSWER{i}"]) for i in range(2)]
    if constrained:
        assert all(isinstance(n, int) for n in counts)  # counts are whole numbers
        assert result.output == counts[0] + counts[1]
    else:
        assert counts == [None, None] and isinstance(result.output, str)


def test_tagging_seed_program_with_real_faces(tiny: Orchestrator, provide) -> None:
    provide("clip", DecisiveClip(tiny.pool.get("clip")))  # random CLIP calls every face 'other'
    provide("llm", ScriptedLLM(["Eileen Collins\n2. Sally Ride\n3. Mae Jemison\n"]))
    program = """\
OBJ0=FaceDet(image=IMAGE)
LIST0=List(query='famous astronauts', max=3)
OBJ1=Classify(image=IMAGE, object=OBJ0, categories=LIST0)
IMAGE0=Tag(image=IMAGE, object=OBJ1)
RESULT=IMAGE0
"""
    result = tiny.execute(program, image="sample:astronaut")
    assert result.ok, result.error
    assert result.values["LIST0"] == ["Eileen Collins", "Sally Ride", "Mae Jemison"]
    faces = result.values["OBJ0"]
    assert len(faces) == 1 and faces[0].box.iou(FACE) > 0.5  # MTCNN, real weights
    labelled = result.values["OBJ1"]
    assert isinstance(labelled, ObjectList)
    assert [o.label for o in labelled] == ["Eileen Collins"]  # the face, named from LIST0
    assert isinstance(result.output, Image) and result.output.size == (512, 512)


def test_editing_seed_program_on_tiny_sam_clip_and_sd(tiny: Orchestrator) -> None:
    program = """\
OBJ0=Seg(image=IMAGE)
OBJ1=Select(image=IMAGE, object=OBJ0, query='desert', category=None)
IMAGE0=Replace(image=IMAGE, object=OBJ1, prompt='lush green grass')
RESULT=IMAGE0
"""
    result = tiny.execute(program, image="sample:coffee")
    assert result.ok, result.error
    segs = result.values["OBJ0"]
    assert len(segs) >= 1 and all(o.mask is not None and o.mask.shape == (400, 600) for o in segs)
    assert len(result.values["OBJ1"]) == 1 and result.values["OBJ1"][0].label == "desert"
    out = result.output
    assert isinstance(out, Image) and out.size == (600, 400)
    assert result.trace.step("IMAGE0").meta["backend"] == "diffusion"


def test_pythonish_seed_program_on_tiny_owl(tiny: Orchestrator) -> None:
    program = """\
boat_box = LOC(image, "boat")
boat_crop = CROP(image, boat_box)
people = DETECT(boat_crop, "person")
count = COUNT(people)
answer = EVAL(count == 3)
"""
    result = tiny.execute(program, image="sample:coffee")
    assert result.ok, result.error
    assert isinstance(result.values["boat_box"], ObjectList)
    assert isinstance(result.values["count"], int) and isinstance(result.output, bool)


def test_facedet_tag_and_bgblur_on_the_astronaut(tiny: Orchestrator) -> None:
    program = "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\nIMAGE1=BgBlur(image=IMAGE, object=OBJ0)\nRESULT=IMAGE1"
    result = tiny.execute(program, image="sample:astronaut")
    assert result.ok, result.error
    [face] = result.values["OBJ0"]
    assert face.box.iou(FACE) > 0.5 and face.score > 0.9
    original = to_image("sample:astronaut").array.astype(int)
    tagged = result.values["IMAGE0"].array.astype(int)
    assert (
        np.abs(
            tagged[int(face.box.y0) + 20, int(face.box.x0)]
            - original[int(face.box.y0) + 20, int(face.box.x0)]
        ).sum()
        > 0
    )
    blurred = result.output.array.astype(int)
    cx, cy = (int(v) for v in face.box.center)
    assert np.abs(blurred[cy, cx] - original[cy, cx]).max() < 8  # the face stays sharp
    assert np.abs(blurred[450:500, 20:80] - original[450:500, 20:80]).mean() > 3  # the rest blurs


def test_ocr_reads_a_rendered_sign(tiny: Orchestrator) -> None:
    sign = PILImage.new("RGB", (480, 160), (20, 60, 20))
    draw = ImageDraw.Draw(sign)
    from tools.draw import font

    draw.text((30, 45), "EXIT 42 NORTH", fill=(255, 255, 255), font=font(56))
    result = tiny.execute("TEXT0=Ocr(image=IMAGE)\nRESULT=TEXT0", image=sign)
    assert result.ok, result.error
    text = " ".join(result.output.labels).upper()
    assert "EXIT" in text and "42" in text and "NORTH" in text


def test_classify_over_twenty_faces_is_one_clip_call(tiny: Orchestrator) -> None:
    face = to_image("sample:astronaut").pil.crop((150, 20, 290, 190)).resize((120, 140))
    grid = PILImage.new("RGB", (120 * 5, 140 * 4), (255, 255, 255))
    for i in range(20):
        grid.paste(face, ((i % 5) * 120, (i // 5) * 140))
    program = "OBJ0=FaceDet(image=IMAGE)\nOBJ1=Classify(image=IMAGE, object=OBJ0, categories=['astronaut', 'pilot', 'doctor'])\nRESULT=OBJ1"
    clip = tiny.pool.get("clip")
    before = clip.stats["image_encoder"]
    result = tiny.execute(program, image=grid)
    assert result.ok, result.error
    assert len(result.values["OBJ0"]) == 20
    assert clip.stats["image_encoder"] - before == 1  # 20 crops, one batched forward
    assert len(result.output) <= 3  # one best object per label


def test_point_then_count_and_point_then_seg(tiny: Orchestrator, provide) -> None:
    provide("pointer", FixedPointer([(300, 200), (150, 120)]))  # random Molmo points nowhere
    program = "POINTS0=Point(image=IMAGE, object='cup')\nN=Count(object=POINTS0)\nOBJ0=Seg(image=IMAGE, object=POINTS0)\nRESULT=OBJ0"
    result = tiny.execute(program, image="sample:coffee")
    assert result.ok, result.error
    points = result.values["POINTS0"]
    assert isinstance(points, PointList) and result.values["N"] == len(points) == 2
    assert len(result.output) == 2
    assert all(o.mask is not None for o in result.output)


def test_loc_special_names_are_image_halves(tiny: Orchestrator) -> None:
    result = tiny.execute(
        "A=Loc(image=IMAGE, object='BOTTOM')\nB=Loc(image=IMAGE, object='right')\nRESULT=B",
        image="sample:coffee",
    )
    assert result.values["A"][0].box == Box(0, 200, 600, 400)
    assert result.values["B"][0].box == Box(300, 0, 600, 400)


def test_replace_offline_falls_back_to_classical_inpainting_and_says_so(tmp_path) -> None:
    orch = Orchestrator(Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False))
    result = orch.execute(
        "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=Replace(image=IMAGE, object=OBJ0, prompt='a cat face')\nRESULT=IMAGE0",
        image="sample:astronaut",
    )
    orch.close()
    assert result.ok, result.error
    meta = result.trace.step("IMAGE0").meta
    assert meta["backend"] == "classical" and "prompt is not used" in meta["warning"]
    before = to_image("sample:astronaut").array.astype(int)
    after = result.output.array.astype(int)
    assert np.abs(after[90:130, 200:240] - before[90:130, 200:240]).mean() > 5  # the face changed
    assert np.abs(after[450:, :80] - before[450:, :80]).max() == 0  # far away: untouched


def test_emoji_covers_faces(tiny: Orchestrator) -> None:
    result = tiny.execute(
        "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=Emoji(image=IMAGE, object=OBJ0, emoji='smiling_face_with_sunglasses')\nRESULT=IMAGE0",
        image="sample:astronaut",
    )
    assert result.ok, result.error
    before = to_image("sample:astronaut").array.astype(int)
    after = result.output.array.astype(int)
    assert np.abs(after[100:110, 215:225] - before[100:110, 215:225]).mean() > 20


def test_list_parses_messy_output_and_caches(tiny: Orchestrator, provide) -> None:
    llm = ScriptedLLM(
        [' "Sheldon Cooper"\n2) Leonard Hofstadter.\n- Penny\n4. Penny\n5. Howard Wolowitz\n']
    )
    provide("llm", llm)
    program = (
        "LIST0=List(query='main characters of a sitcom about physicists', max=4)\nRESULT=LIST0"
    )
    first = tiny.execute(program)
    assert first.output == ["Sheldon Cooper", "Leonard Hofstadter", "Penny", "Howard Wolowitz"]
    second = tiny.execute(program)  # no output left in the script: served from the cache
    assert second.output == first.output and second.trace.step("LIST0").meta["cache_hit"]


def test_cupl_descriptions_are_written_once_per_category(tiny: Orchestrator, provide) -> None:
    llm = ScriptedLLM([" A small dog with fringed, butterfly-shaped ears.\n2. Long silky coat.\n",
                       " A tall dog with a grey coat.\n2. Long legs and a narrow head.\n"])  # fmt: skip
    provide("llm", llm)
    program = "OBJ0=Loc(image=IMAGE, object='TOP')\nOBJ1=Classify(image=IMAGE, object=OBJ0, categories=['papillon', 'wolfhound'], describe=True)\nRESULT=OBJ1"
    result = tiny.execute(program, image="sample:chelsea")
    assert result.ok, result.error
    assert len(llm.prompts) == 2 and "papillon" in llm.prompts[0]
    again = tiny.execute(program, image="sample:chelsea")
    assert again.ok and len(llm.prompts) == 2  # cached per category


@pytest.mark.parametrize("missing", ["detector", "vlm", "clip"])
def test_missing_models_are_a_clear_no_backend_error(tmp_path, missing: str) -> None:
    programs = {"detector": "A=Loc(image=IMAGE, object='dog')", "vlm": "A=Vqa(image=IMAGE, question='what?')",
                "clip": "A=Loc(image=IMAGE, object='TOP')\nB=Select(image=IMAGE, object=A, query='cat')"}  # fmt: skip
    orch = Orchestrator(Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False))
    result = orch.execute(programs[missing], image="sample:coffee")
    orch.close()
    assert result.error.code == "no-backend" and missing in result.error.message


def test_classify_assignment_rules() -> None:
    import numpy as np

    from tools.builtin.match import assign

    #                  cat   dog   other
    probs = np.array([[0.7, 0.2, 0.1],   # object 0: a cat
                      [0.6, 0.3, 0.1],   # object 1: also cat-like
                      [0.1, 0.2, 0.7]])  # object 2: neither  # fmt: skip
    one_each = assign(probs)
    assert [(o, c) for o, c, _ in one_each] == [(0, 0), (1, 1)]  # one best object per label
    every = assign(probs, per_object=True)
    assert [(o, c) for o, c, _ in every] == [(0, 0), (1, 0)]  # both cats; 'other' dropped
    assert every[0][2] == 0.7


def test_classify_per_object_runs_on_tiny_models(tiny: Orchestrator, provide) -> None:
    provide("clip", DecisiveClip(tiny.pool.get("clip")))  # random CLIP calls every crop 'other'
    program = (
        "OBJ2=Seg(image=IMAGE)\n"
        "OBJ3=Classify(image=IMAGE, object=OBJ2, categories=['cup', 'saucer'], per_object=True)\nRESULT=OBJ3"
    )
    result = tiny.execute(program, image="sample:coffee")
    assert result.ok, result.error
    segments = result.values["OBJ2"]
    assert len(segments) >= 1 and len(result.output) == len(segments)  # none dropped
    assert [o.label for o in result.output] == ["cup", "saucer"] * (len(segments) // 2) + [
        "cup"
    ] * (len(segments) % 2)
