"""Every Python-form example (``programs/library/python.yaml``) must parse, pass the static
check against the real tool registry, and really run end to end on the tiny models.

The tiny models give noise, so a run checks only that the program finishes and returns a
plain value; that also proves each example copes with any answer (an empty ``find``, a
non-numeric reply), which is what a planner imitating it needs.
"""

from __future__ import annotations

from collections import Counter

import pytest
from skimage import data

import programs
import sandbox
import tools
from orchestrator import Orchestrator
from orchestrator.forms import get_form
from programs import Example
from sandbox import ProgramInvalid, VisChainError
from tools.types import Image

FAMILY = "python"
MIN_EXAMPLES = 15
EXAMPLES = programs.load_family(FAMILY)
REGISTRY = tools.default_registry(plugins=False)

# which input each parameter of execute_command binds to
PARAMETER_INPUT = {"image": "IMAGE", "left": "LEFT", "right": "RIGHT", "video": "VIDEO"}
# skimage photos each input is run on (pairs: both orders)
SAMPLES = {
    ("IMAGE",): [
        {"IMAGE": "sample:coffee"},
        {"IMAGE": "sample:astronaut"},
        {"IMAGE": "sample:chelsea"},
    ],
    ("LEFT", "RIGHT"): [
        {"LEFT": "sample:coffee", "RIGHT": "sample:chelsea"},
        {"LEFT": "sample:chelsea", "RIGHT": "sample:coffee"},
    ],
    # a three-frame video made of the photos (a list of frames is a video input)
    ("VIDEO",): [{"VIDEO": [data.chelsea(), data.coffee()[:300, :451], data.chelsea()]}],
}
OUTPUT_TYPES = (str, int, float, bool, Image, list)

IDS = [f"{i}-{e.instruction[:40]}" for i, e in enumerate(EXAMPLES)]


def _where(example: Example) -> str:
    return f"instruction: {example.instruction!r}\ninputs: {list(example.inputs)}\n{example.text}"


def _errors(exc: VisChainError) -> str:
    errors = getattr(exc, "errors", None) or [exc]
    return "\n".join(f"  {e}" for e in errors)


def _parsed(example: Example) -> sandbox.PythonProgram:
    try:
        program = sandbox.parse(example.program, form="python")
    except ProgramInvalid as exc:
        pytest.fail(f"{_where(example)}\ndoes not parse:\n{_errors(exc)}")
    assert isinstance(program, sandbox.PythonProgram), _where(example)
    return program


def test_family_has_enough_examples() -> None:
    assert len(EXAMPLES) >= MIN_EXAMPLES, f"{FAMILY}: only {len(EXAMPLES)} examples"
    assert all(e.family == FAMILY and e.form == "python" for e in EXAMPLES)


def test_instructions_are_unique() -> None:
    seen = Counter(" ".join(e.instruction.casefold().split()) for e in EXAMPLES)
    repeated = sorted(text for text, n in seen.items() if n > 1)
    assert not repeated, f"instructions that appear more than once: {repeated}"


def test_every_input_set_has_sample_images() -> None:
    missing = {e.inputs for e in EXAMPLES} - set(SAMPLES)
    assert not missing, f"no sample images for inputs {sorted(missing)}"


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_example_parses_and_checks(example: Example) -> None:
    program = _parsed(example)
    wanted = [PARAMETER_INPUT.get(p, f"<unknown parameter {p!r}>") for p in program.params]
    assert wanted == list(example.inputs), (
        f"{_where(example)}\nparameters {list(program.params)} do not match the inputs"
    )
    try:
        get_form(FAMILY).check(program, REGISTRY, inputs=list(example.inputs))
    except ProgramInvalid as exc:
        pytest.fail(f"{_where(example)}\nfails the check:\n{_errors(exc)}")


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_example_runs_on_tiny_models(example: Example, tiny: Orchestrator) -> None:
    for images in SAMPLES[example.inputs]:
        result = tiny.execute(example.program, images=images, form="python")
        where = f"{_where(example)}\nimages: {images}"
        assert result.ok, f"{where}\nerror: {result.error}\nstep errors: {result.step_errors}"
        assert isinstance(result.output, OUTPUT_TYPES), (
            f"{where}\noutput of type {type(result.output).__name__}: {result.output!r}"
        )
