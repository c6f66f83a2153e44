"""A small tool catalog for sandbox tests (the sandbox imports no tools)."""

from __future__ import annotations

from collections.abc import Sequence

from sandbox import ParamSpec, Signature


class SmallCatalog:
    """Four tools and simple type rules: enough to exercise every checker rule."""

    def __init__(self) -> None:
        self.sigs = {
            "loc": Signature(
                "Loc",
                (ParamSpec("image", "Image"), ParamSpec("object", "Text")),
                "ObjectList",
                aliases=("DETECT",),
            ),
            "crop": Signature(
                "Crop", (ParamSpec("image", "Image"), ParamSpec("box", "ObjectList")), "Image"
            ),
            "count": Signature("Count", (ParamSpec("object", "ObjectList"),), "Number"),
            "eval": Signature("Eval", (ParamSpec("expr", "Expression"),), "Any"),
            "classify": Signature(
                "Classify",
                (
                    ParamSpec("object", "ObjectList"),
                    ParamSpec("categories", "TextList"),
                    ParamSpec("top", "Number", required=False, default=1),
                ),
                "ObjectList",
            ),
        }
        for sig in list(self.sigs.values()):
            for alias in sig.aliases:
                self.sigs[alias.lower()] = sig

    def signature(self, name: str) -> Signature | None:
        return self.sigs.get(name.lower())

    def tool_names(self) -> Sequence[str]:
        return ["Loc", "DETECT", "Crop", "Count", "Eval", "Classify"]

    def assignable(self, source: str, target: str) -> bool:
        return "Any" in (source, target) or source == target or source in target.split("|")

    def literal_error(self, value: object, target: str) -> str | None:
        ok = {
            "Text": isinstance(value, str),
            "Number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "TextList": isinstance(value, (str, tuple)),
        }.get(target, False)
        return None if ok else f"expects {target}, got {value!r}"

    def item_type(self, target: str) -> str | None:
        return "Text" if target == "TextList" else None
