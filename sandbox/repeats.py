"""Steps of a line program that repeat a selection already made, and their fix-its.

A small planner decoding greedily can fall into a loop: after
``OBJ1=Select(image=IMAGE, object=OBJ0, query='face of a man')`` it writes
``OBJ2=Select(image=IMAGE, object=OBJ1, query='face of a man')``, then ``OBJ3`` from
``OBJ2``, until the step limit ends the program (often before the step it meant to reach).

:func:`repeated_steps` finds such steps. A step *repeats* when it calls a selection tool on
a value that came, through an unbroken chain of calls to that same tool, from a call with
the same arguments: ``T(x, a)`` where ``x`` is ``T(..T(y, a)..)``. A selection is a call
that takes a list of objects and gives one (``Select``, ``Classify``: the tool's output
type goes where the chained argument's does, and it is not a picture or a video — a
picture tool applied twice, a blur or a crop, changes the picture again). Each link of the
chain reads the one before it in the same parameter (``object=`` above); every other
argument, bound to its parameter by keyword or position, must be equal (names compared
after the repeats before them are dropped). Choosing again, by the same query, among what
that query already chose, chooses the same: the step changes nothing. Its fix-it
(:attr:`ProgramError.fix`, code ``repeated-step``) drops it and has its uses read the value
it read (:func:`sandbox.hints.apply_fixes`). So ``OBJ2``..``OBJ14`` above all become
``OBJ1``, and a chain that alternates two queries keeps one step of each.

The checker does not call this: a repeated step is valid, and a caller decides whether to
drop it (the agent loop does, before it runs a program).
"""

from __future__ import annotations

from .errors import ErrorCode, ProgramError
from .ir import Program, Ref, Step, Value
from .signatures import Catalog, Signature

MEDIA = ("Image", "Video")  # the types a call transforms rather than selects from


def repeated_steps(program: Program, catalog: Catalog) -> list[ProgramError]:
    """One ``repeated-step`` error per step that repeats an earlier call of its chain, in
    program order; each fix-it names the step and the value its uses should read instead
    (an earlier repeat already resolved, so the fixes apply in one pass)."""
    return _Repeats(catalog).find(program)


class _Repeats:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.steps: dict[str, Step] = {}  # the steps kept, by the name each assigns
        self.dropped: dict[str, str] = {}  # a repeated step → the value that stands for it

    def find(self, program: Program) -> list[ProgramError]:
        errors: list[ProgramError] = []
        for step in program.steps:
            found = self.repeat(step) if step.is_call else None
            if found is None:
                self.steps[step.target] = step
                continue
            read, earlier = found
            self.dropped[step.target] = read
            message = (
                f"{step.target} calls {step.tool} again with the arguments of {earlier} "
                f"(line {self.steps[earlier].line}) on what that call chose: it chooses the "
                f"same again; drop the step and use {read}"
            )
            code, fix = ErrorCode.REPEATED_STEP, (step.target, read)
            errors.append(ProgramError(code, message, step.line, step.col, step.target, fix))
        return errors

    def resolve(self, name: str) -> str:
        seen = {name}
        while name in self.dropped and self.dropped[name] not in seen:
            name = self.dropped[name]
            seen.add(name)
        return name

    def arguments(self, step: Step, sig: Signature) -> dict[str, Value]:
        """The step's arguments by parameter name (by keyword, else by position), names
        read resolved to the steps kept."""
        out: dict[str, Value] = {}
        for i, arg in enumerate(step.args):
            name = arg.name or (sig.params[i].name if i < len(sig.params) else f"#{i}")
            param = sig.param(name)
            value = arg.value
            resolved = Ref(self.resolve(value.name)) if isinstance(value, Ref) else value
            out[param.name if param is not None else name] = resolved
        return out

    def repeat(self, step: Step) -> tuple[str, str] | None:
        """(the value ``step`` reads through its chain, the earlier step it repeats), or
        None."""
        sig = self.catalog.signature(step.tool or "")
        if sig is None or sig.output in MEDIA:
            return None
        args = self.arguments(step, sig)
        for param in sig.params:
            value = args.get(param.name)
            if not isinstance(value, Ref) or value.name not in self.steps:
                continue
            if not self.catalog.assignable(sig.output, param.type):
                continue
            rest = {k: v for k, v in args.items() if k != param.name}
            current: Step | None = self.steps[value.name]
            visited: set[str] = set()
            while current is not None and current.target not in visited:
                theirs_sig = self.catalog.signature(current.tool or "")
                if theirs_sig is None or theirs_sig.name != sig.name:
                    break
                visited.add(current.target)
                theirs = self.arguments(current, sig)
                link = theirs.pop(param.name, None)
                if not isinstance(link, Ref):
                    break
                if theirs == rest:
                    return value.name, current.target
                current = self.steps.get(link.name)
        return None
