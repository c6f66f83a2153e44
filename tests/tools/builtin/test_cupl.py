"""CuPL descriptions: written once per (label, model, prompt), in one batched call for all
the missing labels, and read back from disk by a new process without any LLM call."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.scripted_llm import ScriptedLLM
from tools.backends.llm import DEFAULT_REQUEST, Completion, LLMRequest
from tools.builtin.cupl import Describer

REPO = Path(__file__).resolve().parents[3]


class CountingLLM(ScriptedLLM):
    """Counts complete_many calls (the inherited loop sends one completion per prompt)."""

    def __init__(self, outputs: list[str], name: str = "scripted") -> None:
        super().__init__(outputs, name=name)
        self.batches: list[list[str]] = []

    def complete_many(
        self, prompts: Sequence[str], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        self.batches.append(list(prompts))
        return super().complete_many(prompts, request)


def test_missing_labels_are_written_in_one_batched_call(tmp_path: Path) -> None:
    llm = CountingLLM([" Big ears.\n2. Small body.", " Grey coat.\n2. Long legs."])
    describer = Describer(llm, tmp_path)
    out = describer.describe_many(["papillon", "wolfhound", "papillon"])
    assert out == {"papillon": ["Big ears", "Small body"], "wolfhound": ["Grey coat", "Long legs"]}
    assert len(llm.batches) == 1 and len(llm.batches[0]) == 2
    assert "papillon" in llm.batches[0][0] and "wolfhound" in llm.batches[0][1]
    assert describer.describe("papillon") == ["Big ears", "Small body"]  # memory: no call
    assert len(llm.batches) == 1
    entries = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sorted(e["label"] for e in entries) == ["papillon", "wolfhound"]
    assert all(e["model"] == llm.spec.key() and e["prompt"] for e in entries)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_the_key_holds_label_model_and_prompt(tmp_path: Path) -> None:
    llm = CountingLLM([" A.", " B.", " C."])
    Describer(llm, tmp_path).describe("papillon")
    other_model = CountingLLM([" D."], name="another")
    assert Describer(other_model, tmp_path).describe("papillon") == ["D"]
    other_prompt = Describer(llm, tmp_path, prompt="Describe a {name} in {k} lines.\n1.")
    assert other_prompt.describe("papillon") == ["B"]
    fewer = Describer(llm, tmp_path, k=2)  # the number of sentences is part of the prompt
    assert fewer.describe("papillon") == ["C"]
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_a_damaged_entry_is_written_again(tmp_path: Path) -> None:
    llm = CountingLLM([" A.", " B."])
    Describer(llm, tmp_path).describe("papillon")
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    assert Describer(llm, tmp_path).describe("papillon") == ["B"]
    assert json.loads(entry.read_text())["descriptions"] == ["B"]


SECOND_PROCESS = """
import sys
from pathlib import Path
from tests.support.scripted_llm import ScriptedLLM
from tools.builtin.cupl import Describer

llm = ScriptedLLM([])  # any LLM call fails: "the scripted LLM ran out of outputs"
print(Describer(llm, Path(sys.argv[1])).describe_many(["papillon", "wolfhound"]))
print(len(llm.prompts))
"""


def test_a_second_process_makes_no_llm_call_for_cached_labels(tmp_path: Path) -> None:
    llm = CountingLLM([" Big ears.", " Grey coat."])
    Describer(llm, tmp_path).describe_many(["papillon", "wolfhound"])
    done = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "{'papillon': ['Big ears'], 'wolfhound': ['Grey coat']}",
        "0",
    ]
