"""Pages from Jinja2 templates (``orchestrator/templates/``, shipped as package data).

Autoescaping is on for every template: values passed in are text, never markup, so a
trace or dataset item holding ``<script>`` shows it as text.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

_ENV = Environment(
    loader=PackageLoader("orchestrator", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_template(name: str, **context: Any) -> str:
    """Render the template ``name`` (e.g. ``"trace.html.j2"``) with ``context``."""
    return _ENV.get_template(name).render(**context)
