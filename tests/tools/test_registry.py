"""The registry: lookups, collisions, the checker catalog, and plug-ins from an installed
package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import check, parse
from tools import Image, Registry, default_registry, tool
from tools.base import ToolContext


@tool(name="Shout", aliases=("YELL",), examples=["T=Shout(text='hi')"])
def shout(text: str, times: int = 1) -> str:
    """Upper-case a text.

    Args:
        text: what to shout
        times: how often
    """
    return " ".join([text.upper()] * times)


def test_lookup_is_case_insensitive_and_through_aliases() -> None:
    reg = Registry([shout])
    assert reg.get("shout") is shout and reg.get("yell") is shout and "SHOUT" in reg
    sig = reg.signature("Yell")
    assert sig is not None and sig.name == "Shout"
    assert [p.name for p in sig.params] == ["text", "times"]
    assert sig.params[1].required is False and sig.params[1].default == 1
    with pytest.raises(KeyError):
        reg.get("whisper")


def test_name_collisions_are_refused() -> None:
    reg = Registry([shout])

    @tool(name="Yell")
    def other(text: str) -> str:
        """Another."""
        return text

    with pytest.raises(ValueError, match="already used"):
        reg.add(other)
    with pytest.raises(ValueError, match="already registered"):
        reg.add(shout)


def test_docs_come_from_the_definition() -> None:
    doc = Registry([shout]).docs()
    assert "Shout(text: Text, times: Number=1) -> Text" in doc
    assert "(also: YELL)" in doc
    assert "text: what to shout" in doc
    assert "e.g. T=Shout(text='hi')" in doc


def test_catalog_drives_the_checker() -> None:
    reg = Registry([shout])
    bound = check(parse("A=yell('x', 2)\nB=Shout(text=A)"), reg)
    assert bound.steps[0].tool == "Shout"


def test_subset() -> None:
    reg = Registry([shout])
    assert len(reg.subset([])) == 0 and len(reg.subset(["yell"])) == 1


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo plug-in package, really installed (pip) into a directory on sys.path."""
    target = tmp_path_factory.mktemp("site")
    source = Path(__file__).parent / "plugin_demo"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))


def test_plugin_is_discovered_from_an_installed_package(installed_plugin: Path) -> None:
    reg = Registry([shout])
    added = reg.load_plugins()
    assert sorted(added) == ["Brightness", "Mirror"]
    assert "broken" in reg.plugin_errors  # a broken entry point is reported, not fatal
    assert "Mirror(image: Image) -> Image" in reg.docs()
    bound = check(parse("A=Flip(image=IMAGE)\nB=Brightness(A)"), reg)
    assert [s.tool for s in bound.steps] == ["Mirror", "Brightness"]
    from PIL import Image as PILImage

    img = Image(PILImage.new("RGB", (4, 2), (255, 255, 255)))
    assert reg.get("Brightness")(img, ctx=ToolContext()) == pytest.approx(1.0)


def test_taking_lists_the_tools_a_value_of_a_type_can_be_passed_to() -> None:
    reg = default_registry(plugins=False)
    takers = reg.taking("ObjectList")
    assert "Count" in takers and "Emoji" in takers and "Vqa" not in takers
    assert set(reg.taking("ObjectList", required=True)) <= set(takers)
    assert "Count" not in reg.taking("Text")  # Count takes objects, not text
