"""``python -m orchestrator`` is the ``vischain`` command."""

from .cli import main

raise SystemExit(main())
