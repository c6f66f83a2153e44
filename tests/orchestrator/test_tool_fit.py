"""Whether a program's detections are about what the instruction names (tool-fit)."""

from __future__ import annotations

from orchestrator.config import AgentChecks
from orchestrator.tool_fit import (
    FitStep,
    content,
    fold,
    named,
    program_steps,
    proper_names,
    record_steps,
    unfit,
    words,
)
from orchestrator.trace import ArgRecord, StepRecord
from sandbox import parse
from tools import default_registry

CHECKS = AgentChecks()
TOOLS = default_registry(plugins=False)


def misses(instruction: str, program: str, **kw) -> list[str]:
    """The steps of a line program that tool-fit finds, by name."""
    about = named(instruction, CHECKS.fit_synonyms)
    found = unfit(about, program_steps(parse(program), TOOLS), subjects=CHECKS.fit_subjects,
                  synonyms=CHECKS.fit_synonyms, proper=proper_names(instruction),
                  **kw)  # fmt: skip
    return [m.step.name for m in found]


def test_plural_and_possessive_forms_meet() -> None:
    for a, b in [("wheels", "wheel"), ("horses", "horse"), ("boxes", "box"),
                 ("ladies", "lady"), ("cat's", "cat"), ("glasses", "glass")]:  # fmt: skip
        assert fold(a) == fold(b), (a, b)
    assert fold("bus") == "bus" and fold("this") == "this"


def test_what_an_instruction_names() -> None:
    assert words("How many wheels are in the photo?") == {"wheel"}
    assert words("What is in the picture?") == frozenset()
    assert content("Put a sunglasses emoji over her face") == ("sunglasses", "emoji", "her", "face")
    # a synonym group widens what is named: "her" names a person, and so a face
    assert {fold("face"), fold("person"), "woman"} <= named(
        "Is she smiling?", [["she", "face", "person", "woman"]]
    )
    assert named("Is she smiling?") == {fold("smiling"), "she"}


def test_a_face_detector_for_wheels_does_not_fit() -> None:
    counted = "OBJ0=FaceDet(image=IMAGE)\nN0=Count(object=OBJ0)\nRESULT=N0"
    assert misses("How many wheels are in the photo?", counted) == ["OBJ0"]
    assert misses("How many people are in the photo?", counted) == []  # a person's face
    assert misses("Put a sunglasses emoji over her face", counted) == []


def test_segmenting_every_region_names_nothing_unless_a_later_step_does() -> None:
    counted = "OBJ0=Seg(image=IMAGE)\nN0=Count(object=OBJ0)\nRESULT=N0"
    assert misses("How many wheels are in the photo?", counted) == ["OBJ0"]
    selected = "OBJ0=Seg(image=IMAGE)\nOBJ1=Select(image=IMAGE, object=OBJ0, query='wheel')\nN0=Count(object=OBJ1)\nRESULT=N0"
    assert misses("How many wheels are in the photo?", selected) == []
    # boxes from a detector that was told what to find: the segmentation refines them
    boxed = "BOX0=Loc(image=IMAGE, object='wheel')\nOBJ0=Seg(image=IMAGE, object=BOX0)\nRESULT=OBJ0"
    assert misses("Find the wheels", boxed) == []


def test_a_query_the_instruction_does_not_mention() -> None:
    found = "BOX0=Loc(image=IMAGE, object='cup')\nRESULT=BOX0"
    assert misses("Find the saucer", found) == ["BOX0"]
    assert misses("Find the saucer", found.replace("cup", "saucer")) == []
    assert misses("Find the saucer", found, queries=False) == []  # a follow-up may re-phrase
    # a step that uses the detection asks about what is named: the program is about it
    asked = ("BOX0=Loc(image=IMAGE, object='motorcycle')\nIMAGE0=Crop(image=IMAGE, box=BOX0)\n"
             "A0=Vqa(image=IMAGE0, question='How many wheels are there?')\nRESULT=A0")  # fmt: skip
    assert misses("How many wheels are in the photo?", asked) == []
    # the halves of the picture are places, not objects
    half = "BOX0=Loc(image=IMAGE, object='TOP')\nIMAGE0=Crop(image=IMAGE, box=BOX0)\nRESULT=IMAGE0"
    assert misses("Crop the picture to the rocket", half) == []


def test_an_edits_text_and_a_pick_among_faces_do_not_say_what_was_found() -> None:
    """ "Replace the cat with a small dog" written with FaceDet (item 31 of bench/agent.py):
    the Select among the faces is told 'cat…' and the Replace 'small dog', yet faces are all
    it can find. An edit's text is what it puts where the objects are, and a pick among a
    fixed detector's objects returns that detector's things."""
    replace = "Replace the cat with a small dog"
    faces = ("OBJ0=FaceDet(image=IMAGE)\n"
             "OBJ1=Select(image=IMAGE, object=OBJ0, query='cat with a long golden coat')\n"
             "IMAGE0=Replace(image=IMAGE, object=OBJ1, prompt='small dog')\nRESULT=IMAGE0")  # fmt: skip
    assert misses(replace, faces) == ["OBJ0"]
    regions = "OBJ0=Seg(image=IMAGE)\nIMAGE0=Replace(image=IMAGE, object=OBJ0, prompt='small dog')\nRESULT=IMAGE0"
    assert misses(replace, regions) == ["OBJ0"]
    # the cat found by name, or picked among every region or a broader query's finds: fine
    assert (
        misses(replace, faces.replace("FaceDet(image=IMAGE)", "Loc(image=IMAGE, object='cat')"))
        == []
    )
    assert misses(replace, faces.replace("FaceDet(image=IMAGE)", "Seg(image=IMAGE)")) == []
    assert (
        misses(replace, faces.replace("FaceDet(image=IMAGE)", "Loc(image=IMAGE, object='animal')"))
        == []
    )
    # a face crop asked about what is named still is (eyes are in faces)
    eyes = ("OBJ0=FaceDet(image=IMAGE)\nIMAGE0=Crop(image=IMAGE, box=OBJ0)\n"
            "A0=Vqa(image=IMAGE0, question='What colour are the eyes?')\nRESULT=A0")  # fmt: skip
    assert misses("What colour are the eyes?", eyes) == []


def test_an_instruction_that_names_nothing_is_not_judged() -> None:
    counted = "OBJ0=FaceDet(image=IMAGE)\nN0=Count(object=OBJ0)\nRESULT=N0"
    assert misses("How many are there in this picture?", counted) == []


def test_unlisted_detectors_are_not_judged_and_the_message_names_the_words() -> None:
    read = "OBJ0=Ocr(image=IMAGE)\nN0=Count(object=OBJ0)\nRESULT=N0"
    assert misses("How many wheels are in the photo?", read) == []  # Ocr is not in fit_subjects
    step = FitStep("OBJ0", 1, "FaceDet", (), (), True)
    [miss] = unfit(named("How many wheels?"), [step], subjects={"FaceDet": ["face"]})
    assert miss.message(["wheels"]) == (
        "FaceDet finds face for OBJ0 (line 1), not what the instruction names (wheels), and "
        "no step that uses it is told what that is: find it by name"
    )


def test_no_library_example_is_judged_unfit() -> None:
    """The library's programs are right for their instructions: none is a finding (category
    queries refined by a Classify told the names, persons named by their role, "knives"
    for "knife", a List the Classify reads)."""
    from programs import load_library

    judged = 0
    for example in load_library():
        if example.text.lstrip().startswith("def "):
            continue  # a Python example: judged from its step records after it runs
        judged += 1
        assert misses(example.instruction, example.text) == [], example.instruction
    assert judged > 100
    steps = [FitStep("BOX0", 1, "Loc", ("building",), (), True),
             FitStep("LIST0", 2, "List", ("famous landmarks in Paris",), (), False),
             FitStep("OBJ0", 3, "Classify", (), ("BOX0", "LIST0"), True)]  # fmt: skip
    about = named("Identify the famous Paris landmarks")
    assert unfit(about, steps, subjects={}) == []
    assert [m.step.name for m in unfit(about, steps[:1], subjects={})] == ["BOX0"]


def test_a_step_is_told_only_its_text_arguments_not_values_passed_to_it() -> None:
    """A Python program's calls pass values, not references: FaceDet given the picture is
    not a detector told to find 'image 512×512' (a records' argument types decide)."""

    def record(tool: str, arg: ArgRecord) -> StepRecord:
        return StepRecord(f"{tool}0", 0, 2, f"{tool}(...)", tool, args=[arg],
                          output={"type": "ObjectList"})  # fmt: skip

    def found(instruction: str, rec: StepRecord) -> list[str]:
        about = named(instruction, CHECKS.fit_synonyms)
        misses = unfit(about, record_steps([rec]), subjects=CHECKS.fit_subjects,
                       synonyms=CHECKS.fit_synonyms)  # fmt: skip
        return [m.step.name for m in misses]

    picture = ArgRecord("image", "image 512×512", None, "Image")
    assert found("How many faces?", record("FaceDet", picture)) == []
    assert found("How many wheels?", record("FaceDet", picture)) == ["FaceDet0"]
    assert (
        found("How many wheels?", record("Loc", ArgRecord("object", "wheel", None, "Text"))) == []
    )
    assert found("How many wheels?", record("Loc", ArgRecord("object", "dog", None, "Text"))) == [
        "Loc0"
    ]


def test_faces_picked_by_the_names_the_instruction_gives_fit() -> None:
    """ "Tag Sheldon and Leonard": faces classified by the names given are the people named,
    though nothing tells the check they are people; a pick among faces by a word that is no
    name ("cat") still is not."""
    assert proper_names("Tag Sheldon and Leonard in the photo") == {"sheldon", "leonard"}
    assert proper_names("Is the Eiffel Tower lit?") == {"eiffel", "tower"}
    assert proper_names("How many cats are there?") == frozenset()
    tag = ("OBJ0=FaceDet(image=IMAGE)\n"
           "OBJ1=Classify(image=IMAGE, object=OBJ0, categories=['Sheldon', 'Leonard'])\n"
           "IMAGE0=Tag(image=IMAGE, object=OBJ1)\nRESULT=IMAGE0")  # fmt: skip
    assert misses("Tag Sheldon and Leonard", tag) == []
    listed = ("OBJ0=FaceDet(image=IMAGE)\nLIST0=List(query='main characters of The Avengers')\n"
              "OBJ1=Classify(image=IMAGE, object=OBJ0, categories=LIST0)\n"
              "IMAGE0=Tag(image=IMAGE, object=OBJ1)\nRESULT=IMAGE0")  # fmt: skip
    assert misses("Tag the Avengers", listed) == []
    cat = tag.replace("['Sheldon', 'Leonard']", "['cat', 'dog']")
    assert misses("Tag the cat and the dog", cat) == ["OBJ0"]
