"""Long fuzzing runs of the sandbox: the properties of ``tests/sandbox/test_fuzz.py`` (any
text gives a program or a typed error; checking and running it end in a value or a typed
error under the budget), with fresh random seeds and many more examples.

Every input that breaks a property is a finding: it is recorded (not just the first), the
findings are grouped by where the raw exception came from, and the shortest input of each
group is printed, ready to become a regression test (add it to ``test_findings_stay_fixed``
in ``tests/sandbox/test_fuzz.py`` once fixed). Exits 1 when anything was found.

    .venv/bin/python bench/fuzz.py --examples 2000 --seed 7
"""

from __future__ import annotations

import argparse
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from common import report  # also puts the project root on sys.path
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.support.fuzz import expressions, holds_for, line_programs, python_programs

PROPERTIES: dict[str, st.SearchStrategy[str]] = {
    "line programs": line_programs(),
    "python programs": python_programs(),
    "expressions in Eval": expressions().map(lambda e: f"A=Eval({e!r})"),
    "expressions in Python": expressions().map(
        lambda e: (
            f"def execute_command(image):\n    xs = [later('a'), [later(1)]]\n    return {e}\n"
        )
    ),
    "any text": st.text(max_size=400),
}


@dataclass
class Findings:
    """Inputs that broke the property, grouped by (exception type, where it was raised)."""

    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    tried: int = 0

    def record(self, text: str, exc: BaseException) -> None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        key = (type(exc).__name__, f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}")
        self.groups.setdefault(key, []).append(text)


def run(strategy: st.SearchStrategy[str], examples: int, seed_value: int) -> Findings:
    found = Findings()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # every finding is kept, none shrunk away
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(strategy)
    def prop(text: str) -> None:
        found.tried += 1
        try:
            holds_for(text)
        except Exception as exc:
            found.record(text, exc)

    prop()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per property")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--only", choices=sorted(PROPERTIES), help="one property only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    all_groups: dict[tuple[str, str], list[str]] = {}
    for name, strategy in PROPERTIES.items():
        if args.only and name != args.only:
            continue
        start = time.process_time()
        found = run(strategy, args.examples, args.seed)
        seconds = time.process_time() - start
        rows.append(
            {
                "property": name,
                "examples": found.tried,
                "findings": sum(len(v) for v in found.groups.values()),
                "kinds": len(found.groups),
                "cpu_s": round(seconds, 1),
            }
        )
        for key, texts in found.groups.items():
            all_groups.setdefault(key, []).extend(texts)
    shortest: Callable[[list[str]], str] = lambda texts: min(texts, key=len)  # noqa: E731
    report(
        "fuzz",
        rows,
        ["property", "examples", "findings", "kinds", "cpu_s"],
        seed=args.seed,
        findings={f"{k[0]} at {k[1]}": shortest(v) for k, v in all_groups.items()},
    )
    for (kind, where), texts in all_groups.items():
        print(f"\n{kind} at {where} ({len(texts)} inputs); shortest:\n{shortest(texts)!r}")
    raise SystemExit(1 if all_groups else 0)


if __name__ == "__main__":
    main()
