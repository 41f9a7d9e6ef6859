"""Every notebook at the repository root runs top to bottom in smoke mode; its set-up cell works on
(a stand-in for) Colab and is safe to rerun; its parameters can put the results on Google Drive."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in ROOT.glob("*.ipynb"))


def _code_cells(name: str) -> list[str]:
    return [c.source for c in nbformat.read(ROOT / name, as_version=4).cells if c.cell_type == "code"]


def _set(source: str, name: str, value: str) -> str:
    """``source`` with the one line ``NAME = ...`` replaced by ``NAME = value``."""
    pattern = re.compile(rf"^{name} = .*$", re.MULTILINE)
    assert len(pattern.findall(source)) == 1, f"{name} must be set on exactly one line"
    return pattern.sub(lambda _: f"{name} = {value}", source)


@pytest.mark.parametrize("name", ["model_trainer.ipynb", "synaptic_filtering.ipynb", "defensive_perturbation.ipynb"])
def test_every_name_a_notebook_imports_from_the_package_exists(name: str) -> None:
    """Cheap, and catches a renamed or moved function long before the smoke run would."""
    imported = []
    for source in _code_cells(name):
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
        imported += [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and (node.module or "").startswith("robustness") for alias in node.names]
    assert imported, f"{name} imports nothing from the package"
    missing = [f"{module}.{attr}" for module, attr in imported
               if not hasattr(importlib.import_module(module), attr)
               and importlib.util.find_spec(f"{module}.{attr}") is None]
    assert not missing, f"{name} imports names the package lacks: {missing}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean_with_a_gpu(name: str) -> None:
    nb = nbformat.read(ROOT / name, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert "colab.research.google.com" in nb.cells[0].source
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"]


def test_the_set_up_cells_are_one_cell_whose_url_matches_the_badges() -> None:
    setups = {name: _code_cells(name)[0] for name in NOTEBOOKS}
    assert len(set(setups.values())) == 1, "the notebooks' set-up cells differ"
    url = re.search(r'^REPO_URL = "https://github.com/([^"]+)\.git"', next(iter(setups.values())), re.MULTILINE)
    assert url, "REPO_URL must be a GitHub URL"
    for name in NOTEBOOKS:
        badge = nbformat.read(ROOT / name, as_version=4).cells[0].source
        assert f"colab.research.google.com/github/{url.group(1)}/blob/main/{name}" in badge


_STAND_IN = """
import os, subprocess, sys, types
colab = types.ModuleType("google.colab")  # all the set-up cell asks of Colab: that it is there
sys.modules["google"], sys.modules["google.colab"] = types.ModuleType("google"), colab
for cell in sys.argv[1:]:
    source = open(cell).read()
    for run in (1, 2):
        exec(compile(source, cell, "exec"), {})
        print("cwd after run", run, os.getcwd())
import robustness
print("imported", robustness.__file__)
"""


def test_set_up_cell_clones_once_installs_and_reruns_on_colab(tmp_path: Path) -> None:
    """Each notebook's set-up cell, run twice as on Colab: ``REPO_URL`` points at a local clone of this
    repository, ``CHECKOUT`` into a temporary folder, and ``PIP_INSTALL`` at a dry run of pip (``--dry-run
    --no-index --report``), so the shared environment gets nothing installed while pip still resolves
    the install: the report must hold the package alone, i.e. the installed torch is kept."""
    origin = tmp_path / "origin"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(origin)], check=True)
    content = tmp_path / "content"
    content.mkdir()
    cells, reports = [], []
    for name in NOTEBOOKS:
        report = tmp_path / f"{name}.report.json"
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-index", "--no-build-isolation",
               "--report", str(report)]
        source = _set(_code_cells(name)[0], "REPO_URL", repr(str(origin)))
        source = _set(source, "CHECKOUT", repr(str(content / name.removesuffix(".ipynb"))))
        cells.append(tmp_path / f"{name}.py")
        cells[-1].write_text(_set(source, "PIP_INSTALL", repr(pip)))
        reports.append(report)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the package comes from the clone alone
    run = subprocess.run([sys.executable, "-c", _STAND_IN, *map(str, cells)], cwd=content, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    first = content / NOTEBOOKS[0].removesuffix(".ipynb")  # one process: the later cells reuse its import
    for name in NOTEBOOKS:
        checkout = content / name.removesuffix(".ipynb")
        assert (checkout / ".git").is_dir() and (checkout / "robustness" / "__init__.py").is_file()
        assert run.stdout.count(f"cwd after run 1 {checkout}\n") == 1, run.stdout  # absolute, not nested
        assert run.stdout.count(f"cwd after run 2 {checkout}\n") == 1, run.stdout
    assert f"imported {first / 'robustness' / '__init__.py'}" in run.stdout
    assert run.stdout.count("device cpu: auto:") == 2 * len(NOTEBOOKS)
    for report in reports:
        installs = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
        assert installs == ["robustness-toolkit"], f"pip would also install {installs}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_put_models_and_plots_on_google_drive(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params = _code_cells(name)[1]
    mounted = []
    drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(drive=drive))
    local: dict = {}
    exec(params, local)
    assert (local["MODELS_ROOT"], local["PLOTS_ROOT"], mounted) == ("saved_models", "plots", [])
    on_drive: dict = {}
    exec(_set(params, "USE_DRIVE", "True"), on_drive)
    assert mounted == ["/content/drive"]
    assert on_drive["MODELS_ROOT"] == f"{on_drive['DRIVE_FOLDER']}/saved_models"
    assert on_drive["PLOTS_ROOT"] == f"{on_drive['DRIVE_FOLDER']}/plots"
    assert on_drive["DRIVE_FOLDER"].startswith("/content/drive/")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setenv("ROBUSTNESS_SMOKE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(tmp_path / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert list((tmp_path / "plots").glob("*.png")), "the notebook saved no figure to plots/"
    assert "device cpu: auto:" in "".join(o.get("text", "") for o in nb.cells[1].outputs)
    if name == "synaptic_filtering.ipynb":  # the study from a preset: its plan first, then its page inline
        printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        assert printed.index("plan of the smoke preset") < printed.index("[1/10]")
        pages = [o.get("data", {}).get("text/markdown", "") for o in nb.cells[-1].outputs]
        assert any("# What the toolkit finds" in page for page in pages)
