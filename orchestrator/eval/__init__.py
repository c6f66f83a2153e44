"""``vischain eval``: standard benchmarks in their own formats, their papers' metrics, and
where each wrong answer went wrong.

- :mod:`.datasets` reads GQA, NLVR2, VQAv2/OK-VQA, RefCOCO/+/g, tagging/editing and
  generic JSONL sets into :class:`~.datasets.Item` lists;
- :mod:`.metrics` holds the metrics; :mod:`.scoring` applies one to a run's outcome;
- :mod:`.attribution` names the first implausible step (or the program) of a wrong item;
- :mod:`.runner` (:func:`evaluate`) runs, resumes and records; :mod:`.report` summarises,
  writes ``report.html`` and compares two runs;
- :mod:`.offline_set` writes the small set the offline models can really answer.
"""

from __future__ import annotations

from .datasets import LOADERS, DatasetError, Item, Metric
from .report import compare, compare_text
from .runner import EvalError, evaluate

__all__ = [
    "LOADERS",
    "DatasetError",
    "EvalError",
    "Item",
    "Metric",
    "compare",
    "compare_text",
    "evaluate",
]
