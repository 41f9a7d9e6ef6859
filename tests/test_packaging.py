"""The wheel: only the `robustness` package, its own distribution name, ranged dependencies, the command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import robustness

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_package_alone(tmp_path: Path) -> None:
    """Built from a copy of the checkout's files (plots/, Dataset/, saved_models/, tests/ included),
    with the environment's setuptools, so nothing is downloaded and nothing installed."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "checkout"
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    assert {"plots", "Dataset", "saved_models", "tests"} <= {p.name for p in source.iterdir()}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith(f"robustness_toolkit-{robustness.__version__}-py3-none-any")
    names = zipfile.ZipFile(wheel).namelist()
    info = f"robustness_toolkit-{robustness.__version__}.dist-info/"
    assert {n.split("/")[0] + "/" for n in names} == {"robustness/", info}
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "robustness").rglob("*.py")} <= set(names)
    assert "robustness/cli/options.py" in names  # the subpackages too
    meta = zipfile.ZipFile(wheel).read(info + "METADATA").decode()
    assert "Name: robustness-toolkit" in meta and "Requires-Dist: torch>=2.9" in meta
    assert "Provides-Extra: timm" in meta and "Provides-Extra: robustbench" in meta
    assert "robustness = robustness.cli:entry_point" in zipfile.ZipFile(wheel).read(info + "entry_points.txt").decode()
