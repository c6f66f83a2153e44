"""Every in-context example and every held-out reference program must parse, check against
the real tool registry, follow the library's conventions and end in ``RESULT=<name>``.

The examples are what a small planner model imitates, so a broken or sloppy example
compounds into broken plans; these tests keep the libraries honest as tools change.
Checking needs no models: the registry's signatures are enough.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

import programs
import sandbox
import tools
from programs import Example
from sandbox import BoundProgram, Const, Program, ProgramInvalid, Ref

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "bench" / "data" / "heldout.yaml"

FAMILIES = {"gqa", "nlvr", "tagging", "editing", "counting", "cupl"}
MIN_EXAMPLES = 15
MIN_HELDOUT_PER_FAMILY = 8
MAX_TOOL_STEPS = 8

# Step names say what kind of value a step makes: BOX0 (Loc), OBJ0 (other object lists),
# IMAGE0 (pictures), ANSWER0 (text and numbers), LIST0, POINTS0, TEXT0 (Ocr).
PREFIX = {
    "Loc": "BOX",
    "FaceDet": "OBJ",
    "Seg": "OBJ",
    "Select": "OBJ",
    "Classify": "OBJ",
    "Crop": "IMAGE",
    "CropLeft": "IMAGE",
    "CropRight": "IMAGE",
    "CropAbove": "IMAGE",
    "CropBelow": "IMAGE",
    "Tag": "IMAGE",
    "ColorPop": "IMAGE",
    "BgBlur": "IMAGE",
    "Replace": "IMAGE",
    "Emoji": "IMAGE",
    "Vqa": "ANSWER",
    "Count": "ANSWER",
    "Eval": "ANSWER",
    "List": "LIST",
    "Point": "POINTS",
    "Ocr": "TEXT",
}
POSITIONAL_TOOLS = {"Eval"}  # Eval("...") takes its expression without the keyword
RESULT_LINE = re.compile(r"RESULT=([A-Z][A-Z0-9_]*)")
STEP_NAME = re.compile(r"([A-Z]+)(\d+)")

REGISTRY = tools.default_registry(plugins=False)


def _normalize(text: str) -> str:
    return " ".join(text.casefold().split())


def _library() -> list[tuple[str, int, Example]]:
    return [
        (name, i, example)
        for name in programs.families()
        for i, example in enumerate(programs.load_family(name))
    ]


def _heldout() -> list[dict]:
    return yaml.safe_load(HELDOUT.read_text(encoding="utf-8"))["items"]


def _heldout_examples() -> list[tuple[str, int, Example]]:
    return [
        (
            "heldout",
            i,
            Example(
                family=item["family"],
                instruction=str(item["instruction"]).strip(),
                program=str(item["reference"]).strip() + "\n",
                inputs=tuple(item["inputs"]),
            ),
        )
        for i, item in enumerate(_heldout())
    ]


LIBRARY = _library()
HELDOUT_ITEMS = _heldout_examples()


def _where(source: str, index: int, example: Example) -> str:
    return f"{source}[{index}] ({example.family}): {example.instruction!r}\n{example.text}"


def _checked(source: str, index: int, example: Example) -> tuple[Program, BoundProgram]:
    """Parse and check, failing with every error and where the example is."""
    try:
        program = sandbox.parse(example.program)
        bound = sandbox.check(program, REGISTRY, inputs=example.inputs)
    except ProgramInvalid as exc:
        errors = "\n".join(f"  {e}" for e in exc.errors)
        pytest.fail(f"{_where(source, index, example)}\nerrors:\n{errors}")
    return program, bound


def _problems(program: Program, bound: BoundProgram, example: Example) -> list[str]:
    """Every convention the example breaks (an empty list when it follows them all)."""
    problems: list[str] = []
    lines = [ln.strip() for ln in example.text.splitlines() if ln.strip()]

    # The program ends with RESULT=<name>, naming an earlier step.
    match = RESULT_LINE.fullmatch(lines[-1])
    if not match:
        problems.append(f"the last line must be RESULT=<NAME>, not {lines[-1]!r}")
    else:
        name = match.group(1)
        earlier = {s.target for s in program.steps[:-1]}
        if name not in earlier:
            problems.append(f"RESULT names {name!r}, which no earlier step defines")
    last = program.steps[-1]
    if last.target != "RESULT" or last.is_call or not isinstance(last.bound_value, Ref):
        problems.append("the last step must be the plain binding RESULT=<NAME>")
    for step in program.steps[:-1]:
        if not step.is_call:
            problems.append(f"line {step.line}: only RESULT may be a plain binding")

    calls = [s for s in program.steps if s.is_call]
    if not 1 <= len(calls) <= MAX_TOOL_STEPS:
        problems.append(f"{len(calls)} tool steps; keep programs to 1-{MAX_TOOL_STEPS}")

    # No dead steps: everything feeds RESULT.
    deps = {s.target: s.deps for s in bound.steps}
    needed: set[str] = set()
    todo = ["RESULT"]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo.extend(deps.get(name, ()))
    dead = [s.target for s in program.steps if s.target not in needed]
    if dead:
        problems.append(f"steps that do not contribute to RESULT: {', '.join(dead)}")

    # Canonical tool names, keyword arguments in declared order, names by kind.
    counters: dict[str, int] = defaultdict(int)
    for step in calls:
        where = f"line {step.line} ({step.text})"
        sig = REGISTRY.signature(step.tool or "")
        if sig is None:
            continue  # the checker already reported it
        if step.tool != sig.name:
            problems.append(f"{where}: write the tool's own name {sig.name!r}, not {step.tool!r}")
        if sig.name == "Result":
            problems.append(f"{where}: end with RESULT=<NAME> instead of Result(...)")
        positional = [a for a in step.args if a.name is None]
        if sig.name in POSITIONAL_TOOLS:
            if len(step.args) != 1 or len(positional) != 1:
                problems.append(f'{where}: write {sig.name}("...") with one positional argument')
        elif positional:
            problems.append(f"{where}: use keyword arguments")
        declared = [p.name for p in sig.params]
        given = [a.name for a in step.args if a.name is not None]
        if given != sorted(given, key=declared.index):
            problems.append(f"{where}: keep keyword arguments in the declared order {declared}")
        prefix = PREFIX.get(sig.name)
        named = STEP_NAME.fullmatch(step.target)
        if prefix is None:
            problems.append(f"{where}: no naming convention for {sig.name}; add it to PREFIX")
        elif not named or named.group(1) != prefix:
            problems.append(f"{where}: name a {sig.name} step {prefix}<n>, not {step.target}")
        else:
            expected = counters[prefix]
            if int(named.group(2)) != expected:
                problems.append(
                    f"{where}: number {prefix} steps in order; expected {prefix}{expected}"
                )
            counters[prefix] += 1

        # Quotes: single quotes, double quotes only around an Eval expression with quotes in it.
        if sig.name == "Eval":
            expr = step.args[0].value if step.args else None
            source = getattr(expr, "source", None) or getattr(expr, "value", None)
            opening = re.sub(r"^\w+=Eval\((expr=)?", "", step.text)[:1]
            wanted = '"' if isinstance(source, str) and "'" in source else "'"
            if opening != wanted:
                problems.append(f"{where}: quote this Eval expression with {wanted}")
        elif '"' in step.text:
            problems.append(f"{where}: use single quotes for strings")

        if sig.name == "Emoji":
            emoji = next((a.value for a in step.args if a.name == "emoji"), None)
            if isinstance(emoji, Const) and isinstance(emoji.value, str):
                from tools.emoji import emoji_char

                try:
                    emoji_char(emoji.value)
                except ValueError as exc:
                    problems.append(f"{where}: {exc}")
    return problems


# --- the libraries ---------------------------------------------------------------------------


def test_every_family_is_present() -> None:
    missing = FAMILIES - set(programs.families())
    assert not missing, f"missing example libraries: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_has_enough_examples(name: str) -> None:
    examples = programs.load_family(name)
    assert len(examples) >= MIN_EXAMPLES, f"{name}: {len(examples)} examples"
    assert all(e.family == name for e in examples)


LINE_EXAMPLES = [item for item in LIBRARY if item[2].form == "lines"]  # Python: test_python_library


@pytest.mark.parametrize(
    ("source", "index", "example"),
    LINE_EXAMPLES,
    ids=[f"{e.family}-{i}" for _, i, e in LINE_EXAMPLES],
)
def test_library_example(source: str, index: int, example: Example) -> None:
    program, bound = _checked(example.family, index, example)
    problems = _problems(program, bound, example)
    assert not problems, _where(example.family, index, example) + "\n" + "\n".join(problems)


def test_instructions_are_unique() -> None:
    seen = Counter(_normalize(e.instruction) for _, _, e in LIBRARY)
    repeated = sorted(text for text, n in seen.items() if n > 1)
    assert not repeated, f"instructions that appear more than once: {repeated}"


# --- the held-out set ------------------------------------------------------------------------


def test_heldout_covers_every_family() -> None:
    per_family = Counter(e.family for _, _, e in HELDOUT_ITEMS)
    for name in sorted(FAMILIES):
        assert per_family[name] >= MIN_HELDOUT_PER_FAMILY, f"{name}: {per_family[name]} items"
    unknown = set(per_family) - set(programs.families())
    assert not unknown, f"held-out items for families with no library: {sorted(unknown)}"


def test_heldout_items_are_well_formed() -> None:
    for i, item in enumerate(_heldout()):
        assert set(item) == {"family", "inputs", "instruction", "reference"}, (i, sorted(item))
        library_inputs = programs.load_family(item["family"])[0].inputs
        assert tuple(item["inputs"]) == library_inputs, (i, item["instruction"])


@pytest.mark.parametrize(
    ("source", "index", "example"),
    HELDOUT_ITEMS,
    ids=[f"heldout-{i}-{e.family}" for _, i, e in HELDOUT_ITEMS],
)
def test_heldout_reference(source: str, index: int, example: Example) -> None:
    program, bound = _checked(source, index, example)
    problems = _problems(program, bound, example)
    assert not problems, _where(source, index, example) + "\n" + "\n".join(problems)


def test_heldout_instructions_are_unique_and_unseen() -> None:
    heldout = Counter(_normalize(e.instruction) for _, _, e in HELDOUT_ITEMS)
    repeated = sorted(text for text, n in heldout.items() if n > 1)
    assert not repeated, f"held-out instructions that appear more than once: {repeated}"
    library = {_normalize(e.instruction) for _, _, e in LIBRARY}
    leaked = sorted(set(heldout) & library)
    assert not leaked, f"held-out instructions that are also library examples: {leaked}"


def test_library_lines_read_the_same_by_the_fast_path_and_ast() -> None:
    """The line parser's regular-expression path (sandbox.lines._plain_step) gives exactly
    the ast route's step for every line of the library and the held-out set it takes, and
    it takes most of them (VisProg-style lines are its common case)."""
    from sandbox.lines import _parse_line, _plain_step

    taken = total = 0
    for _source, _index, example in LIBRARY + HELDOUT_ITEMS:
        if example.family == "python":
            continue
        for number, line in enumerate(example.program.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            total += 1
            fast = _plain_step(stripped, number, 0)
            if fast is not None:
                taken += 1
                assert repr(fast) == repr(_parse_line(stripped, number, 0)), stripped
    assert total > 100 and taken / total > 0.9, (taken, total)  # 765 of 789 when written
