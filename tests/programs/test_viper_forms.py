"""ViperGPT's program forms run unchanged: every ImagePatch method and attribute of its
``api.prompt``, its global helpers, ``str.format``, numpy's statistics and VideoSegment over
a video input. The programs are written for these tests in the forms ViperGPT's prompts
use (GQA, OK-VQA, RefCOCO and NExT-QA styles); malformed programs of the kinds found in
those prompts are refused with a line number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator import Orchestrator
from sandbox import ErrorCode, ProgramInvalid
from tests.support.scripted_llm import ScriptedLLM
from tools.builtin.text import LlmQuery
from tools.types import Image
from tools.video import Video

GQA_STYLE = """import math


def execute_command(image) -> str:
    image_patch = ImagePatch(image)
    cup_patches = image_patch.find("cup")
    if len(cup_patches) == 0:
        # nothing found: ask the whole picture
        return image_patch.simple_query("Is there a cup on the left?")
    cup_patch = cup_patches[0]
    saucers = image_patch.find("saucer")
    for saucer in saucers:
        if saucer.horizontal_center > cup_patch.horizontal_center:
            return "yes"
    is_cup = image_patch.exists("cup")
    is_white = cup_patch.verify_property("cup", "white")
    colour = cup_patch.best_text_match(["white", "black"])
    return bool_to_yesno(is_cup and is_white) + " " + colour
"""

ATTRIBUTES_AND_GEOMETRY = """def execute_command(image):
    image_patch = ImagePatch(image)
    top = image_patch.crop(0, image_patch.height // 2, image_patch.width, image_patch.height)
    left = image_patch.crop(image_patch.left, image_patch.lower, image_patch.horizontal_center,
                            image_patch.upper)
    pixels = top.cropped_image
    facts = [top.width, top.height, top.lower, top.upper, top.left, top.right,
             top.vertical_center, left.horizontal_center]
    touching = top.overlaps_with(left.left, left.lower, left.right, left.upper)
    apart = distance(top, image_patch.crop(0, 0, 10, 10))
    return [facts, touching, apart, pixels.width, distance(3.5, 1)]
"""

REFCOCO_STYLE = """def execute_command(image) -> ImagePatch:
    image_patch = ImagePatch(image)
    cup_patches = image_patch.find("TOP") + image_patch.find("BOTTOM")
    cup_patches.sort(key=lambda cup: cup.compute_depth())
    nearest = cup_patches[0]
    best = best_image_match(list_patches=cup_patches, content=["a white cup"])
    index = best_image_match(cup_patches, ["a white cup", "a saucer"], return_index=True)
    middle = cup_patches[len(cup_patches) // 2]
    lowest = min([p.vertical_center for p in cup_patches])
    low = [p for p in cup_patches if distance(p.vertical_center, lowest) < image_patch.height]
    if len(low) == 0:
        low = cup_patches
    elif len(low) == 1:
        return low[0]
    low.sort(key=lambda p: distance(p, nearest))
    return [nearest, best, cup_patches[index], middle, low[0]]
"""

OKVQA_STYLE = """def execute_command(image)->str:
    image = ImagePatch(image)
    guesses = []
    drink = image.simple_query("What drink is this?")
    about = image.simple_query()
    external_knowledge_query = "Where does {} come from?".format(drink)
    step_by_step_guess = llm_query(external_knowledge_query)
    guesses.append("this drink is {}".format(drink) + ", so " + step_by_step_guess)
    guesses.append("{0} or {1}, {kind:>8}|{n:.2f}".format(drink, about, kind="hot", n=2))
    short = image.llm_query(f"Which country drinks the most {drink}?", long_answer=False)
    story = image.llm_query("Explain the history of {}.".format(drink))
    guesses.append(short + story)
    count = coerce_to_numeric("about 10-15 cups")
    return process_guesses("Where does this drink come from?", guesses) + str(count)
"""

NEXTQA_STYLE = """def execute_command(video, possible_answers, query)->[str, dict]:
    video_segment = VideoSegment(video)
    counts = []
    for i, frame in enumerate(video_segment.frame_iterator()):
        counts.append(len(frame.find("TOP")))
    typical = np.round(np.percentile(counts, 90))
    frame_of_interest = None
    for i, frame in enumerate(video_segment.frame_iterator()):
        if frame.exists("LEFT") and \\
                frame.simple_query("Is the square moving?") == "zebra":
            frame_of_interest = frame
            break
    if frame_of_interest is None:
        frame_of_interest = video_segment.frame_from_index(video_segment.num_frames // 2)
    last = video_segment.frame_from_index(-1)
    start = video_segment.trim(0, 5)
    after = start.frame_from_index(i + 1 - start.num_frames)
    caption = frame_of_interest.simple_query("What is in the frame?")
    choice = frame_of_interest.best_text_match(prefix="square", option_list=possible_answers)
    found = [a for a in possible_answers if last.exists(a)]
    not_found = list(set(possible_answers) - set(found))
    info = {
        "Caption of the middle frame": caption,
        "Square looks": choice,
        "Objects": f'found: {found}, not found: {not_found}',
        "Typical count": typical,
        "Frames": "{} of {}, from {} to {}".format(start.num_frames, video_segment.num_frames,
                                                  start.start, start.end),
        "After": after.width,
    }
    answer = video_segment.select_answer(info, query, possible_answers)
    return answer
"""


def test_gqa_style_program(tiny: Orchestrator) -> None:
    result = tiny.execute(GQA_STYLE, image="sample:coffee")
    assert result.ok, result.error
    assert isinstance(result.output, str) and result.output
    assert {"Loc"} <= {s.tool for s in result.trace.steps}


def test_patch_attributes_crop_overlap_and_distance(tiny: Orchestrator) -> None:
    picture = Image(_blank(80, 40))
    result = tiny.execute(ATTRIBUTES_AND_GEOMETRY, image=picture)
    assert result.ok, result.error
    facts, touching, apart, pixel_width, number_distance = result.output
    # the top half: y upward from the bottom-left corner, so lower=20, upper=40
    assert facts == [80, 20, 20, 40, 0, 80, 30.0, 20.0]
    assert touching is True
    assert apart == pytest.approx(10.0)  # the 10×10 corner patch is 10 px below the top half
    assert pixel_width == 80
    assert number_distance == 2.5


def test_overlapping_patches_are_at_minus_their_iou(tiny: Orchestrator) -> None:
    source = """def execute_command(image):
    whole = ImagePatch(image)
    return distance(whole.crop(0, 0, 20, 10), whole.crop(10, 0, 30, 10))"""
    result = tiny.execute(source, image=Image(_blank(40, 20)))
    assert result.ok, result.error
    assert result.output == pytest.approx(-1 / 3)


def test_refcoco_style_program_with_depth(tiny: Orchestrator) -> None:
    result = tiny.execute(REFCOCO_STYLE, image="sample:coffee")
    assert result.ok, result.error
    assert len(result.output) == 5 and all(isinstance(p, Image) for p in result.output)
    depth = [s for s in result.trace.steps if s.tool == "Depth"]
    assert len(depth) == 2 and all(s.status == "ok" for s in depth)
    assert {s.tool for s in result.trace.steps} >= {"Loc", "Similarity", "Depth"}


def test_okvqa_style_program_with_format_llm_and_guesses(tiny: Orchestrator, provide) -> None:
    llm = ScriptedLLM(["Ethiopia", "Finland", "Coffee came from Ethiopia.", "Ethiopia"])
    provide("llm", llm)
    result = tiny.execute(OKVQA_STYLE, image="sample:coffee")
    assert result.ok, result.error
    assert result.output == "Ethiopia10"
    llm_steps = [s for s in result.trace.steps if s.tool == "LlmQuery"]
    assert len(llm_steps) == 3
    long = [p for p in llm.prompts if p.startswith(LlmQuery.LONG_PROMPT.split("\n")[0])]
    assert len(long) == 1  # the method's long_answer defaults to True (as ViperGPT's)
    assert any("Guess: this drink is" in p for p in llm.prompts)
    select = [s for s in result.trace.steps if s.tool == "SelectAnswer"]
    assert len(select) == 1
    assert "   hot|2.00" in _arg(select[0], "info")


def test_simple_query_without_a_question_asks_what_this_is(tiny: Orchestrator) -> None:
    source = """def execute_command(image):
    return ImagePatch(image).simple_query()"""
    result = tiny.execute(source, image="sample:coffee")
    assert result.ok, result.error
    (vqa,) = [s for s in result.trace.steps if s.tool == "Vqa"]
    assert "What is this?" in _arg(vqa, "question")


def _synthetic_video(path: Path, frames: int = 8) -> Path:
    """A small AVI of a white square moving right over a dark background."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4.0, (48, 32))
    assert writer.isOpened()
    for t in range(frames):
        picture = np.full((32, 48, 3), 30, np.uint8)
        picture[10:22, 4 + 4 * t : 16 + 4 * t] = 255
        writer.write(picture)
    writer.release()
    return path


def test_nextqa_style_program_on_a_synthetic_video(
    tiny: Orchestrator, provide, tmp_path: Path
) -> None:
    provide("llm", ScriptedLLM(["I think the square is moving to the right."]))
    video = _synthetic_video(tmp_path / "square.avi")
    options = ["moving", "still", "gone"]
    result = tiny.execute(
        NEXTQA_STYLE,
        video=video,
        values={"possible_answers": options, "query": "what does the square do"},
    )
    assert result.ok, result.error
    assert result.output == "moving"
    (select,) = [s for s in result.trace.steps if s.tool == "SelectAnswer"]
    info = _arg(select, "info")
    assert "Frames: 5 of 8, from 0 to 5" in info and "Typical count: 1" in info
    assert "After: 48" in info


def test_video_frames_share_the_feature_cache(tiny: Orchestrator) -> None:
    """Frames are pictures: the detector encodes each distinct frame once, in this run and
    the next (its per-picture feature cache), however often programs look at it."""
    first = np.zeros((24, 24, 3), np.uint8)
    first[4:12, 4:12] = 200
    second = np.full((24, 24, 3), 90, np.uint8)
    source = """def execute_command(video):
    segment = VideoSegment(video)
    found = [len(f.find("square")) for f in segment.frame_iterator()]
    again = segment.frame_from_index(0).exists("cube")
    return found"""
    detector = tiny.pool.get("detector")
    before = detector.stats["image_encoder"]
    result = tiny.execute(source, video=[first, second, first.copy()])
    assert result.ok, result.error
    assert len(result.output) == 3 and result.output[0] == result.output[2]
    assert detector.stats["image_encoder"] == before + 2
    assert tiny.execute(source, video=[second, first]).ok
    assert detector.stats["image_encoder"] == before + 2


def test_video_segment_returned_becomes_its_frames(tiny: Orchestrator) -> None:
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 60, 120, 180)]
    source = """def execute_command(video):
    segment = VideoSegment(video)
    return segment.trim(segment.num_frames // 2, segment.num_frames)"""
    result = tiny.execute(source, video=frames)
    assert result.ok, result.error
    assert isinstance(result.output, Video)
    assert result.output.num_frames == 2 and result.output.start == 2
    assert int(result.output.frames[0].array[0, 0, 0]) == 120


# --- malformed programs of the kinds found in ViperGPT's prompt files ----------------------


def test_missing_colon_is_refused_with_its_line(tiny: Orchestrator) -> None:
    source = """def execute_command(image) -> ImagePatch:
    image_patch = ImagePatch(image)
    qux_patch = image_patch.find("qux")[0]
    for foo in image_patch.find("black foo"):
        if foo.vertical_center > qux_patch.vertical_center
            return foo
"""
    with pytest.raises(ProgramInvalid) as info:
        tiny.check(source, inputs=["image"])
    assert [(e.line, e.code) for e in info.value.errors] == [(5, ErrorCode.SYNTAX)]


def test_variable_used_but_never_defined_is_refused_with_its_line(tiny: Orchestrator) -> None:
    source = """def execute_command(image) -> ImagePatch:
    image_patch = ImagePatch(image)
    persons = image_patch.find("person")
    top_all_objects = max([obj.vertical_center for obj in objects])
    return persons[0]
"""
    with pytest.raises(ProgramInvalid) as info:
        tiny.check(source, inputs=["image"])
    assert [(e.line, e.code) for e in info.value.errors] == [(4, ErrorCode.UNDEFINED_NAME)]
    assert "objects" in info.value.errors[0].message


def _arg(step: object, name: str) -> str:
    return {a.name: a.summary for a in step.args}[name]  # type: ignore[attr-defined]


def _blank(width: int, height: int):
    from PIL import Image as PILImage

    return PILImage.new("RGB", (width, height), (90, 120, 150))


def test_planner_api_docs_cover_the_whole_api_and_only_runnable_parts() -> None:
    from tools.patch import API_FUNCTIONS, PATCH_METHODS, VIDEO_METHODS, api_docs

    docs = api_docs()
    for name in (*PATCH_METHODS, *VIDEO_METHODS):
        assert f"    def {name}(self" in docs, name
    for name in API_FUNCTIONS:
        assert f"class {name}:" in docs or f"def {name}(" in docs, name
    assert "def llm_query(self, question: str, long_answer: bool = True)" in docs
    assert "def best_text_match(self, option_list: list[str], prefix: str | None = None)" in docs
    assert "def select_answer(info: dict, question: str, options: list[str])" in docs
    without_depth = api_docs(available={"Loc", "Vqa", "Match", "Crop", "Similarity"})
    assert "compute_depth" not in without_depth and "llm_query" not in without_depth
    assert "def find(self" in without_depth and "class VideoSegment:" in without_depth


def test_the_planner_is_told_about_depth_and_video(tiny: Orchestrator) -> None:
    tiny.pool.provide("llm", ScriptedLLM([]))
    planner = tiny.planner()
    lines_prompt, _ = planner.prompt("Which cup is nearest?", ["IMAGE"], form="lines")
    assert "Depth(image: Image, object: Box|Object|ObjectList=None) -> Number" in lines_prompt
    assert "Frames(video: Video" in lines_prompt and "Frame(video: Video" in lines_prompt
    python_prompt, _ = planner.prompt("What happens at the end?", ["VIDEO"], form="python")
    assert "class VideoSegment:" in python_prompt and "def compute_depth(self)" in python_prompt
