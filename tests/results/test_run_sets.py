"""Several run dirs read at once (results.runs): paths and globs, names and labels, the facets of each run."""
from __future__ import annotations

import json

import pytest

from rpbench.core.errors import ResultsError
from rpbench.results.runs import combined_rows, load_runs, parse_labels, run_paths

from fake_runs import H100, scaled, scaling_rows, write_run
from multi_runs import A100, env


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    write_run(root / "tokens-1" / "run", scaling_rows(), env=env(1))
    write_run(root / "tokens-2" / "run", [scaled(r, 2.0, device_name=A100) for r in scaling_rows()],
              env=env(2, commit=None, code={"rpbench": {"commit": "feed" * 10, "commit_time": "2025-01-05T00:00:00Z",
                                                        "dirty": True}}))
    (root / "tokens-3").mkdir()  # a dir a glob matches that is not a run: left out
    return root


def test_globs_expand_to_run_dirs_in_name_order(root):
    assert run_paths([str(root / "tokens-*" / "run")]) == [root / "tokens-1" / "run", root / "tokens-2" / "run"]
    assert run_paths([str(root / "tokens-2" / "run"), str(root / "tokens-1/run")]) == [root / "tokens-2" / "run",
                                                                                       root / "tokens-1" / "run"]
    with pytest.raises(ResultsError, match=r"tokens-9\*: no run dir matches this pattern"):
        run_paths([str(root / "tokens-9*")])


def test_runs_are_named_by_dir_label_or_parent_and_never_twice(root):
    runs = load_runs([str(root / "tokens-*" / "run")])
    assert [r.facets.name for r in runs] == ["tokens-1/run", "tokens-2/run"]  # same dir name: the parent joins
    labelled = load_runs([root / "tokens-1" / "run", root / "tokens-2" / "run"],
                         parse_labels([f"{root / 'tokens-2' / 'run'}=A100 nightly"]))
    assert [r.facets.name for r in labelled] == ["run", "A100 nightly"]  # no two alike now
    for bad, message in ((["nolabel"], "expected RUN=NAME"), (["x="], "expected RUN=NAME")):
        with pytest.raises(ResultsError, match=message):
            parse_labels(bad)
    with pytest.raises(ResultsError, match="is not one of the runs given"):
        load_runs([root / "tokens-1" / "run"], {"elsewhere": "x"})
    with pytest.raises(ResultsError, match="given twice"):
        load_runs([root / "tokens-1" / "run", root / "tokens-1" / "run" / "results.csv"])
    with pytest.raises(ResultsError, match="both named 'same'"):
        load_runs([root / "tokens-1" / "run", root / "tokens-2" / "run"],
                  {str(root / "tokens-1" / "run"): "same", str(root / "tokens-2" / "run"): "same"})


def test_facets_come_from_the_rows_and_env_json(root):
    first, second = (r.facets for r in load_runs([str(root / "tokens-*" / "run")]))
    assert (first.device, first.torch, first.timer, first.commit, first.date) == (
        H100, "2.13.0", "cuda_event", "0123abcd", "2025-03-01T12:00:00+00:00")
    # Swept outside a checkout: the commit of the rpbench that ran stands in for the project's.
    assert (second.device, second.commit, second.commit_time, second.dirty) == (A100, "feed" * 10,
                                                                                "2025-01-05T00:00:00Z", True)
    assert second.commit_of("rpbench") == ("feed" * 10, "2025-01-05T00:00:00Z")
    assert second.commit_of("nosuch") == (None, None)


def test_combined_rows_put_the_run_columns_first(root):
    table = combined_rows(load_runs([str(root / "tokens-*" / "run")]))
    assert list(table.columns[:4]) == ["run", "run_dir", "run_device", "run_host"]
    assert len(table) == 2 * len(scaling_rows())
    assert table.groupby("run")["run_device"].first().to_dict() == {"tokens-1/run": H100, "tokens-2/run": A100}
    assert json.loads(table.to_json(orient="records"))[0]["run_commit"] == "0123abcd"
