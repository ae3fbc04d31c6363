"""The GUI's child-process helpers, without Qt: argv, event lines, error lines, project naming."""

from __future__ import annotations

import sys

from spn_napari.jobs import command, default_project_for, error_message, init_command, parse_event


def test_commands_are_the_cli_with_jsonl_progress(tmp_path):
    assert command("round", tmp_path, device="cuda:1", extra=["--epochs", "2"]) == [
        sys.executable, "-m", "spn_napari", "round", str(tmp_path), "--progress", "jsonl",
        "--device", "cuda:1", "--epochs", "2"]
    assert "--device" not in command("superpixels", tmp_path)
    assert init_command(tmp_path / "data", tmp_path / "p") == [
        sys.executable, "-m", "spn_napari", "init", str(tmp_path / "p"), "--from", str(tmp_path / "data"),
        "--progress", "jsonl"]
    assert init_command(tmp_path / "data", tmp_path / "p", background=False)[-1] == "--no-background"


def test_event_lines_and_other_lines():
    ev = parse_event('{"event": "step", "step": 3, "total": 10, "loss": 0.5}')
    assert (ev.event, ev.step, ev.total, ev.data) == ("step", 3, 10, {"loss": 0.5})
    assert parse_event("epoch 1/3") is None and parse_event("[1, 2]") is None and parse_event('{"a": 1}') is None


def test_error_message_is_one_line_never_a_traceback():
    err = "Traceback (most recent call last):\n  File x\nspn-napari: error: round: no pseudo-labels — run it\n"
    assert error_message(err, 2) == "round: no pseudo-labels — run it"
    assert "out of memory" in error_message("", -9) and "--batch-size" in error_message("", 137)
    assert error_message("Traceback\n  File y\nRuntimeError: boom\n", 1) == "the job failed: RuntimeError: boom"


def test_a_data_set_gets_a_sibling_project_that_does_not_exist_yet(tmp_path):
    data = tmp_path / "cells"
    data.mkdir()
    assert default_project_for(data) == tmp_path / "cells-project"
    (tmp_path / "cells-project").mkdir()
    (tmp_path / "cells-project-2").mkdir()
    assert default_project_for(data) == tmp_path / "cells-project-3"
