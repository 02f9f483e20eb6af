"""The one place a FacerecError becomes a one-line exit: facerun's top-level group, for every way it is run
(the console script is covered by test_cli.py and test_bad_input.py; these run it in-process)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from facerec.cli import main


def test_standalone_is_one_line_and_exit_1():
    res = CliRunner().invoke(main, ["info", "backbone", "smal-cnn"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # an exit, not an escaped error
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "did you mean small-cnn" in lines[0]


def test_without_standalone_mode_it_is_raised_as_a_click_exception():
    with pytest.raises(click.ClickException) as err:
        main.main(["info", "backbone", "smal-cnn"], standalone_mode=False)
    assert err.value.exit_code == 1 and "did you mean small-cnn" in err.value.message
    assert "\n" not in err.value.message and err.value.__cause__ is None
