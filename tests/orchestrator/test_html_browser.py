"""The trace page in a real browser: headless Chromium loads it, the step cards are in the
DOM, and a screenshot shows the page rendered."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image as PILImage

from orchestrator import Orchestrator

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: run scripts/install_chromium.sh")
    return path


@pytest.fixture(scope="module")
def page(tiny: Orchestrator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trace")
    program = (
        "OBJ0=FaceDet(image=IMAGE)\n"
        "OBJ1=Seg(image=IMAGE, object=OBJ0)\n"
        "IMAGE0=Crop(image=IMAGE, box=OBJ0)\n"
        "ANSWER0=Vqa(image=IMAGE0, question='Is the person smiling?')\n"
        "N=Count(object=OBJ0)\n"
        "IMAGE1=ColorPop(image=IMAGE, object=OBJ1)\n"
        "RESULT=IMAGE1"
    )
    result = tiny.execute(program, image="sample:astronaut", trace_dir=out)
    assert result.ok, result.error
    return out / "index.html"


def test_chromium_renders_every_step_card(page: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for step in ["OBJ0", "OBJ1", "IMAGE0", "ANSWER0", "N", "IMAGE1", "RESULT"]:
        assert f'data-step="{step}"' in dom
    assert dom.count('class="card ok"') == 7
    assert "<svg" in dom and dom.count("<rect") >= 7  # the DAG


def test_chromium_screenshot_shows_the_page(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,2400", "--hide-scrollbars", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    image = PILImage.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.resize((64, 120)).getcolors(64 * 120) or []
    assert len(colours) > 50  # pictures and text, not a blank page
    dark_header = image.crop((0, 0, 1280, 40)).resize((1, 1)).getpixel((0, 0))
    assert sum(dark_header) < 200  # the page's dark header was drawn
