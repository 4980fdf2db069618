"""The one place that prints errors prints them as written: rich markup in paths, labels and values is text."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import rpbench
from rpbench.cli import app

from cli_helpers import tiny_suite


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.mark.parametrize("name", ["x[/]y.toml", "[bold]loud[/bold].toml", "a[red]b.toml"])
def test_markup_in_a_path_is_printed_as_written(tmp_path, name):
    missing = tmp_path / name
    result = run("sweep", str(missing))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {missing}: no such suite file"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_markup_in_a_knob_value_is_printed_as_written():
    result = run("run", "--attention", "rpattention", "--tokens", "64", "--knob", "tau=[/]", "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: rpattention: knob tau must be float, got '[/]'"


def test_unknown_option_and_bad_choice_are_one_line(tmp_path):
    bad_choice = run("run", "--attention", "dense", "--tokens", "64", "--mode", "[/]backward")
    assert bad_choice.exit_code == 2
    assert bad_choice.stderr.strip().splitlines() == [
        "error: Invalid value for '--mode': '[/]backward' is not one of 'fwd', 'fwdbwd'. (see `rpbench run --help`)"]
    unknown = run("sweep", "--bogus")
    assert unknown.exit_code == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "--bogus" in unknown.stderr


def test_labels_and_names_with_markup_survive_a_whole_sweep(tmp_path):
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    text = path.read_text().replace('name = "tiny"', 'name = "tiny[/]"')
    text = text.replace('[[attention]]\nname = "dense"', '[[attention]]\nname = "dense"\nlabel = "[bold]d[/]"')
    path.write_text(text)
    out = tmp_path / "run"
    result = run("sweep", str(path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "[bold]d[/]" in result.output and "tiny[/]" in result.output
    assert rpbench.load(out)["label"].tolist() == ["[bold]d[/]"]
    report = run("report", str(out))
    assert report.exit_code == 0 and "[bold]d[/]" in report.output


def test_help_lists_choices_and_shows_no_bool_type():
    for command, choices in (("run", "float32|float16|bfloat16"), ("sweep", "auto|cuda|cpu"),
                             ("report", "latency|throughput|memory"), ("export", "csv|parquet|json|md|html")):
        result = run(command, "--help")
        assert result.exit_code == 0 and choices in result.output, (command, result.output)
        assert "<bool>" not in result.output
