"""VisProg's program forms run unchanged: its module names (upper case, with underscores),
its argument names (``box=``, ``var=``, ``expr=``, ``category=None``, ``max=``...), its
input names (IMAGE, LEFT, RIGHT) and its Eval idioms (``{X}``, ``xor``), with VisProg's
semantics where they are defined by geometry. The programs are written for these tests in
the forms VisProg's prompts use; malformed programs of the kinds found in those prompts are
refused with a line number.
"""

from __future__ import annotations

import pytest

from orchestrator import Orchestrator
from sandbox import ErrorCode, ProgramInvalid
from tests.support.scripted_llm import ScriptedLLM
from tests.support.vision_doubles import CountingVlm
from tools.types import Image, ObjectList

# (name, program, input names): every module and argument name of VisProg's four prompt
# files and its interpreter appears at least once.
PROGRAMS = {
    "gqa-count-in-half": (
        """BOX0=LOC(image=IMAGE,object='BOTTOM')
IMAGE0=CROP(image=IMAGE,box=BOX0)
BOX1=LOC(image=IMAGE0,object='cup')
ANSWER0=COUNT(box=BOX1)
ANSWER1=EVAL(expr="'yes' if {ANSWER0} > 0 else 'no'")
FINAL_RESULT=RESULT(var=ANSWER1)""",
        ("IMAGE",),
    ),
    "gqa-relations": (
        """BOX0=LOC(image=IMAGE,object='saucer')
BOX2=LOC(image=IMAGE,object='LEFT')
IMAGE0=CROP_RIGHTOF(image=IMAGE,box=BOX2)
IMAGE1=CROP_LEFTOF(image=IMAGE,box=BOX2)
IMAGE2=CROP_ABOVE(image=IMAGE1,box=BOX2)
IMAGE3=CROP_BELOW(image=IMAGE,box=BOX2)
IMAGE4=CROP_FRONTOF(image=IMAGE,box=BOX0)
IMAGE5=CROP_INFRONTOF(image=IMAGE,box=BOX0)
IMAGE6=CROP_INFRONT(image=IMAGE,box=BOX0)
IMAGE7=CROP_BEHIND(image=IMAGE,box=BOX0)
IMAGE8=CROP_AHEAD(image=IMAGE,box=BOX0)
BOX1=LOC(image=IMAGE7,object='spoon')
ANSWER0=COUNT(box=BOX1)
ANSWER1=VQA(image=IMAGE4,question='What color is the spoon?')
ANSWER2=EVAL(expr="'yes' if {ANSWER0} + 1 > 0 and {ANSWER1} != 'zebra' else 'no'")
FINAL_RESULT=RESULT(var=ANSWER2)""",
        ("IMAGE",),
    ),
    "gqa-side": (
        """BOX0=LOC(image=IMAGE,object='LEFT')
IMAGE0=CROP(image=IMAGE,box=BOX0)
BOX1=LOC(image=IMAGE0,object='TOP')
IMAGE1=CROP(image=IMAGE0,box=BOX1)
BOX2=LOC(image=IMAGE1,object='RIGHT')
ANSWER0=COUNT(box=BOX2)
ANSWER1=EVAL(expr="'left' if {ANSWER0} == 1 else 'right'")
FINAL_RESULT=RESULT(var=ANSWER1)""",
        ("IMAGE",),
    ),
    "nlvr-pair": (
        """ANSWER0=VQA(image=LEFT,question='How many cups are in the image?')
ANSWER1=VQA(image=RIGHT,question='How many cups are in the image?')
ANSWER2=VQA(image=LEFT,question='Is there a spoon?')
ANSWER3=VQA(image=RIGHT,question='Is there a spoon?')
ANSWER4=EVAL(expr='{ANSWER0} + {ANSWER1} >= 2')
ANSWER5=EVAL(expr='{ANSWER2} xor {ANSWER3}')
ANSWER6=EVAL(expr='{ANSWER4} and {ANSWER5} or {ANSWER0} == 2')
ANSWER7=EVAL(expr='{ANSWER6}')
FINAL_ANSWER=RESULT(var=ANSWER7)""",
        ("LEFT", "RIGHT"),
    ),
    "imgedit-faces": (
        """OBJ0=FACEDET(image=IMAGE)
OBJ1=SELECT(image=IMAGE,object=OBJ0,query='the astronaut',category=None)
IMAGE0=EMOJI(image=IMAGE,object=OBJ1,emoji='smiling_face_with_sunglasses')
FINAL_RESULT=RESULT(var=IMAGE0)""",
        ("IMAGE",),
    ),
    "imgedit-segments": (
        """OBJ0=SEG(image=IMAGE)
OBJ1=SELECT(image=IMAGE,object=OBJ0,query='cup,table',category=None)
OBJ2=SELECT(image=IMAGE,object=OBJ0,query='white cup',category='cup')
IMAGE0=COLORPOP(image=IMAGE,object=OBJ1)
IMAGE1=BGBLUR(image=IMAGE0,object=OBJ2)
IMAGE2=REPLACE(image=IMAGE1,object=OBJ2,prompt='a glass of milk')
FINAL_RESULT=RESULT(var=IMAGE2)""",
        ("IMAGE",),
    ),
    "knowtag": (
        """OBJ0=LOC(image=IMAGE,object='cup')
LIST0=LIST(query='kinds of coffee drinks',max=3)
OBJ1=CLASSIFY(image=IMAGE,object=OBJ0,categories=LIST0)
IMAGE0=TAG(image=IMAGE,object=OBJ1)
FINAL_RESULT=RESULT(var=IMAGE0)""",
        ("IMAGE",),
    ),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_visprog_program_checks_and_runs_unchanged(tiny: Orchestrator, provide, name: str) -> None:
    source, inputs = PROGRAMS[name]
    tiny.check(source, inputs=inputs, form="lines")
    if "LIST(" in source:
        provide("llm", ScriptedLLM(["espresso\n2. latte\n3. mocha\n"]))
    if "{ANSWER0} + {ANSWER1} >=" in source:  # adds VQA counts: the tiny VLM writes no number
        provide("vlm", CountingVlm(tiny.pool.get("vlm")))
    images = {n: "sample:coffee" for n in inputs}
    if name == "imgedit-faces":
        images = {"IMAGE": "sample:astronaut"}
    result = tiny.execute(source, images=images, form="lines")
    assert result.ok, result.error
    assert all(s.status == "ok" for s in result.trace.steps), [
        (s.step, s.error) for s in result.trace.steps if s.status != "ok"
    ]
    last = source.splitlines()[-1].split("=")[0]
    assert result.values[last] is not None


def test_every_visprog_module_and_argument_name_is_covered() -> None:
    """The programs above use each name VisProg's prompts and interpreter use."""
    modules = {"LOC", "COUNT", "CROP", "CROP_RIGHTOF", "CROP_LEFTOF", "CROP_FRONTOF",
               "CROP_INFRONTOF", "CROP_INFRONT", "CROP_BEHIND", "CROP_AHEAD", "CROP_BELOW",
               "CROP_ABOVE", "VQA", "EVAL", "RESULT", "FACEDET", "SEG", "SELECT", "COLORPOP",
               "BGBLUR", "REPLACE", "EMOJI", "LIST", "CLASSIFY", "TAG"}  # fmt: skip
    arguments = {"image", "object", "box", "question", "expr", "var", "query", "category",
                 "prompt", "emoji", "max", "categories"}  # fmt: skip
    text = "\n".join(source for source, _ in PROGRAMS.values())
    for module in modules:
        assert f"={module}(" in text, module
    for argument in arguments:
        assert f"{argument}=" in text, argument


def _crop_of(tiny: Orchestrator, module: str, half: str) -> Image:
    source = f"""BOX0=LOC(image=IMAGE,object='{half}')
IMAGE0={module}(image=IMAGE,box=BOX0)
FINAL_RESULT=RESULT(var=IMAGE0)"""
    picture = Image(_blank(100, 60))
    result = tiny.execute(source, image=picture, form="lines")
    assert result.ok, result.error
    return result.output


def _blank(width: int, height: int):
    from PIL import Image as PILImage

    return PILImage.new("RGB", (width, height), (90, 120, 150))


@pytest.mark.parametrize(
    ("module", "half", "size", "origin"),
    [
        # LOC 'LEFT' is the box (0, 0, 50, 60): its centre is x=25
        ("CROP_RIGHTOF", "LEFT", (75, 60), (25, 0)),
        ("CROP_LEFTOF", "RIGHT", (75, 60), (0, 0)),
        # LOC 'TOP' is (0, 0, 100, 30): its centre is y=15
        ("CROP_ABOVE", "BOTTOM", (100, 45), (0, 0)),
        ("CROP_BELOW", "TOP", (100, 45), (0, 15)),
        ("CROP", "TOP", (100, 30), (0, 0)),
        # depth relations cut the box enlarged 1.5 times about its centre, as VisProg does
        ("CROP_BEHIND", "LEFT", (63, 60), (0, 0)),
        ("CROP_FRONTOF", "TOP", (100, 38), (0, 0)),
        ("CROP_AHEAD", "BOTTOM", (100, 38), (0, 22)),
    ],
)
def test_visprog_crops_cut_the_regions_visprog_cuts(
    tiny: Orchestrator, module: str, half: str, size: tuple[int, int], origin: tuple[int, int]
) -> None:
    crop = _crop_of(tiny, module, half)
    assert crop.size == size
    assert crop.origin == origin


def test_count_of_a_half_is_one_and_box_is_count_s_object(tiny: Orchestrator) -> None:
    source = """BOX0=LOC(image=IMAGE,object='TOP')
ANSWER0=COUNT(box=BOX0)
ANSWER1=Count(object=BOX0)
ANSWER2=EVAL(expr='{ANSWER0} + {ANSWER1}')
FINAL_RESULT=RESULT(var=ANSWER2)"""
    result = tiny.execute(source, image=Image(_blank(40, 40)), form="lines")
    assert result.ok, result.error
    assert result.output == 2
    assert isinstance(result.values["BOX0"], ObjectList)


def test_count_refuses_box_and_object_together(tiny: Orchestrator) -> None:
    with pytest.raises(ProgramInvalid) as info:
        tiny.check("BOX0=LOC(image=IMAGE,object='TOP')\nN=COUNT(box=BOX0,object=BOX0)")
    assert info.value.errors[0].code == ErrorCode.ARGUMENT_TWICE
    assert info.value.errors[0].line == 2


# --- malformed programs of the kinds found in VisProg's prompt files -------------------------


def test_result_naming_a_variable_never_assigned_is_refused_with_its_line(
    tiny: Orchestrator,
) -> None:
    source = """BOX0=LOC(image=IMAGE,object='train')
ANSWER0=COUNT(box=BOX0)
ANSWER1=EVAL(expr="'yes' if {ANSWER0} > 0 else 'no'")
FINAL_RESULT=RESULT(var=ANSWER)"""
    with pytest.raises(ProgramInvalid) as info:
        tiny.check(source, inputs=["IMAGE"], form="lines")
    errors = info.value.errors
    assert [(e.line, e.code) for e in errors] == [(4, ErrorCode.UNDEFINED_NAME)]
    assert "ANSWER" in errors[0].message


def test_unescaped_quote_inside_a_quoted_question_is_refused_with_its_line(
    tiny: Orchestrator,
) -> None:
    source = """ANSWER0=VQA(image=LEFT,question='Is there a dog?')
ANSWER1=VQA(image=RIGHT,question='Does it show the characters from Disney's Frozen?')
ANSWER2=EVAL(expr='{ANSWER0} xor {ANSWER1}')
FINAL_ANSWER=RESULT(var=ANSWER2)"""
    with pytest.raises(ProgramInvalid) as info:
        tiny.check(source, inputs=["LEFT", "RIGHT"], form="lines")
    assert [e.line for e in info.value.errors] == [2]
    assert info.value.errors[0].code == ErrorCode.SYNTAX


def test_argument_names_are_matched_ignoring_case(tiny: Orchestrator) -> None:
    bound = tiny.check("ANSWER0=VQA(Image=RIGHT,question='What is it?')", inputs=["RIGHT"])
    assert bound.steps[0].tool == "Vqa"
    assert set(bound.steps[0].args) == {"image", "question"}
