"""`lab notebook list|run`: the notebooks headless, from a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli.main import main as lab_main
from lab.cli.notebook import NOTEBOOK_DIR, find_notebook


def test_a_notebook_is_found_by_number_name_title_or_path() -> None:
    first = NOTEBOOK_DIR / "01_crafting_a_syn.ipynb"
    for name in ("01", "1", "01_crafting_a_syn", "crafting_a_syn", str(first)):
        assert find_notebook(name) == first, name
    assert find_notebook("99") is None
    assert find_notebook("nothing") is None


def test_list_names_every_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["notebook", "list"]) == 0
    assert capsys.readouterr().out.split() == sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))


def test_run_executes_a_notebook_and_prints_what_its_cells_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    executed = tmp_path / "01.ipynb"
    code = lab_main(["notebook", "run", "01", "--mode", "offline", "--output", str(executed)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("mode: OFFLINE (forced by LAB_MODE=offline)")
    assert out.rstrip().endswith("all checks passed (offline)")
    assert "WARNING" not in err
    assert "Traceback" not in err
    assert '"output_type": "stream"' in executed.read_text()


def test_a_failing_cell_is_exit_1_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [
        nbformat.v4.new_code_cell("print('before')"),  # type: ignore[no-untyped-call]
        nbformat.v4.new_code_cell("1 / 0"),  # type: ignore[no-untyped-call]
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    assert lab_main(["notebook", "run", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "before\n"
    assert err.splitlines()[-1] == (
        "lab notebook run: broken.ipynb: a cell failed: ZeroDivisionError: division by zero"
    )
    assert "Traceback" not in err


def test_no_such_notebook_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["notebook", "run", "42"]) == 2
    assert "no notebook '42' (choose from 01_crafting_a_syn" in capsys.readouterr().err


def test_the_executed_copy_never_goes_into_notebooks(capsys: pytest.CaptureFixture[str]) -> None:
    target = NOTEBOOK_DIR / "01_executed.ipynb"
    assert lab_main(["notebook", "run", "01", "--output", str(target)]) == 2
    assert not target.exists()
    assert "outside notebooks/" in capsys.readouterr().err
