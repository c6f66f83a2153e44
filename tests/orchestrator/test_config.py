"""Configuration files and the environment (orchestrator.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import EXIT_USAGE, main
from orchestrator.config import Config, ConfigError


def test_a_file_and_the_environment_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("limits: {step_seconds: 5}\nplanner: {examples: 2}\n")
    monkeypatch.setenv("VISCHAIN_PLANNER__REPAIR_ROUNDS", "4")
    config = Config.load(file)
    assert config.limits.step_seconds == 5 and config.planner.examples == 2
    assert config.planner.repair_rounds == 4


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("typo.yaml", "modles: {profile: tiny}\n", r"modles: Extra inputs are not permitted"),
        (
            "negative.yaml",
            "limits: {step_seconds: -5}\n",
            r"limits\.step_seconds: Input should be greater than 0 \(got -5\)",
        ),
        (
            "zero.toml",
            "[limits]\nmax_steps = 0\n",
            r"limits\.max_steps: Input should be greater than or equal to 1",
        ),
        ("list.yaml", "- a\n- b\n", r"holds a list, not a mapping of settings"),
        (
            "broken.yaml",
            "models: {profile: tiny\n",
            r"unreadable configuration file .*broken\.yaml",
        ),
        ("broken.toml", "[models\n", r"unreadable configuration \(.*broken\.toml"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_it_and_the_setting(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(ConfigError, match=says):
        Config.load(file)


def test_a_bad_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISCHAIN_LIMITS__STEP_SECONDS", "abc")
    with pytest.raises(ConfigError, match=r"limits\.step_seconds: .*valid number.*\(got 'abc'\)"):
        Config.load()


def test_the_cli_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "typo.yaml"
    file.write_text("limits: {step_second: 5}\n")
    assert main(["--config", str(file), "tools"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("vischain: bad configuration") and "limits.step_second" in err
    assert "Traceback" not in err
