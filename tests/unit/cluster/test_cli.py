"""The console script: each command dispatched to its own module; bad arguments refused."""

from __future__ import annotations

import pytest

from cluster.cli import COMMANDS, main


def test_an_unknown_command_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nonsense"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["up", "--shards", "two"], ["up", "--source", "tape"],
                                  ["detect"], ["db", "sideways"]])
def test_bad_arguments_of_a_command_exit_with_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_every_command_has_its_module_and_entry_point() -> None:
    import importlib

    for module, entry, _ in COMMANDS.values():
        assert callable(getattr(importlib.import_module(module), entry))
