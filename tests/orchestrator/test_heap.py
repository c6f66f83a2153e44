from __future__ import annotations

import gc

import pytest

from orchestrator import Config, Orchestrator, heap
from tools import Registry
from tools.builtin.logic import eval_


def test_the_heap_is_frozen_once_per_process_when_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(heap, "_frozen", False)
    monkeypatch.setattr(heap.gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(heap.gc, "freeze", lambda: calls.append("freeze"))

    def build(freeze: bool) -> Orchestrator:
        cfg = Config(
            models={"profile": "offline", "cache_dir": tmp_path},
            plugins=False,
            executor={"gc_freeze": freeze},
        )
        return Orchestrator(cfg, registry=Registry([eval_]))

    build(False).close()
    assert calls == []
    build(True).close()
    assert calls == ["collect", "freeze"]  # garbage collected first, then the rest frozen
    build(True).close()
    assert calls == ["collect", "freeze"]


def test_frozen_heap_leaves_runs_correct(offline: Orchestrator) -> None:
    assert gc.get_freeze_count() > 0  # the fixture's orchestrator froze the import-time heap
    result = offline.execute("A=Eval('2 + 3')\nB=Eval('{A} * {A}')")
    assert result.ok and result.output == 25
