"""``Orchestrator.map(..., engine="ray")``: items spread over Ray worker processes.

Each worker is a Ray actor holding one :class:`~orchestrator.api.Orchestrator` whose model
pool resolves every role to the Serve application's deployments (``models.serve``), so the
workers hold no model of their own and their calls share the replicas' batches. The driver
turns each item's images into :class:`~tools.types.Image` values once and sends them with
the item; a worker runs the item exactly as the thread engine would (plan and run, or
execute) and returns its :class:`~orchestrator.api.RunResult`, trace included. Results come
back in item order, so the caller builds the same report as with threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray

from tools.convert import to_image
from tools.progress import bar
from tools.remote import connect

from .config import Config


@ray.remote(num_cpus=0)
class MapWorker:
    """One process's orchestrator, reused for every item it is given."""

    def __init__(self, config: Config) -> None:
        from .api import Orchestrator

        self.orchestrator = Orchestrator(config)

    def run(self, index: int, item: str, images: Any, program: bool, trace_dir: str | None) -> Any:
        kwargs: dict[str, Any] = (
            {"images": images} if isinstance(images, Mapping) else {"image": images}
        )
        if trace_dir is not None:
            kwargs["trace_dir"] = Path(trace_dir) / f"{index:05d}"
        if program:
            return self.orchestrator.execute(item, **kwargs)
        return self.orchestrator.run(item, **kwargs)


def _converted(images: Any) -> Any:
    """Images made into Image values here (once, on the driver); a value that cannot be is
    passed on as it is, so the worker reports it as that item's typed error."""
    try:
        if isinstance(images, Mapping):
            return {name: to_image(v, name=name) for name, v in images.items()}
        return None if images is None else to_image(images)
    except Exception:
        return images


def map_on_ray(
    config: Config,
    items: Sequence[str],
    per_item: Sequence[Any],
    *,
    mode: str,
    concurrency: int,
    workers: int | None,
    trace_dir: str | Path | None,
    progress: bool,
    failed: Callable[[int, BaseException], Any],
) -> list[Any]:
    """Run ``items`` on Ray workers; one RunResult per item, in order (``failed(i, exc)``
    stands for an item whose worker died or could not return its result)."""
    from .api import _is_program

    serve_settings = config.models.serve
    if serve_settings is None:
        raise ValueError(
            "engine='ray' shares the models of a Serve application: set models.serve "
            "(e.g. {address: auto, app: vischain}) and start it with `vischain serve`"
        )
    if not items:
        return []
    connect(serve_settings)
    n = max(1, min(workers or concurrency, len(items)))
    per_worker = max(1, math.ceil(max(1, concurrency) / n))
    actors = [MapWorker.options(max_concurrency=per_worker).remote(config) for _ in range(n)]
    try:
        directory = None if trace_dir is None else str(trace_dir)
        pending = {
            actors[i % n].run.remote(
                i, item, _converted(per_item[i]), _is_program(item, mode), directory
            ): i
            for i, item in enumerate(items)
        }
        results: list[Any] = [None] * len(items)

        def finished() -> Iterator[Any]:
            waiting = list(pending)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                yield from done

        for ref in bar(finished(), total=len(items), description="runs", enabled=progress):
            try:
                results[pending[ref]] = ray.get(ref)
            except Exception as exc:  # one item's failure never costs the others theirs
                results[pending[ref]] = failed(pending[ref], exc)
        return results
    finally:
        for actor in actors:
            ray.kill(actor)
