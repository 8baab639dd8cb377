"""refine.cli_runner: what every silr CLI does with its command's output and errors."""

from __future__ import annotations

import pytest

from refine.cli_runner import EXIT_ERROR, EXIT_OK, run_cli
from refine.errors import SilrError


def raising(err: BaseException):
    def work():
        raise err

    return work


@pytest.mark.parametrize("err", [SilrError("a value is\nwrong; fix it"), ValueError("a value is\nwrong; fix it"),
                                 FileNotFoundError("a value is\nwrong; fix it")])
def test_an_error_raised_on_purpose_is_one_line_and_exit_1(err, capsys, monkeypatch):
    monkeypatch.delenv("SILR_DEBUG", raising=False)
    assert run_cli(raising(err)) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.err == "error: a value is wrong; fix it\n" and captured.out == ""


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv("SILR_DEBUG", raising=False)
    with pytest.raises(KeyError, match="theta1"):
        run_cli(raising(KeyError("theta1")))


def test_silr_debug_re_raises_an_error_with_its_traceback(monkeypatch):
    monkeypatch.setenv("SILR_DEBUG", "1")
    with pytest.raises(SilrError, match="wrong"):
        run_cli(raising(SilrError("wrong")))


def test_only_the_main_process_prints_the_output(capsys):
    assert run_cli(lambda: "table") == EXIT_OK and capsys.readouterr().out == "table\n"
    assert run_cli(lambda: "table", main_process=False) == EXIT_OK and capsys.readouterr().out == ""
    assert run_cli(lambda: None) == EXIT_OK and capsys.readouterr().out == ""
