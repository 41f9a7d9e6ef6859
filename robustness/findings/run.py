"""A study's run, ``python -m robustness findings --preset P`` (``make findings``): the plan, every step, the page.

Before anything is computed the run prints its plan (:mod:`robustness.findings.plan`) and records its spec in the
models root and the page's folder, refusing a folder that holds another study's (:func:`claim_folder`). Each step is
resumable (what it finds written it reads back), so a rerun with everything present only
regenerates the page. The time of each step is recorded in ``<models_root>/run.json`` when it computes
something (an interrupted step's times add up over the runs that finish it), with the CPU's load average at its
end (to tell a step that shared the machine), and the page reports them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ..distributed import is_main, on_all, on_main, process_group, world_size
from ..errors import InvalidArgument
from ..files import load_json, save_json, write_if_changed
from ..paths import STANDARD
from ..runtime import pick_device
from .collect import collect, settings_rows
from .collect_null import null_scores
from .field_report import run_field_report
from .figures import draw_figures
from .outside import check_sources
from .page import render
from .pgd_scores import pgd_rows
from .plan import check_budget, plan_text, predict, smallest_plan
from .retrain_power import run_power_retraining
from .spec import Place, StudySpec
from .specfile import claim_folder
from .steps import (
    deal_ablations,
    deal_probes,
    run_checks,
    run_null_sweeps,
    run_retraining,
    run_sweeps,
    train_models,
)
from .table import COLUMNS, table_csv

# How a step runs under torchrun: "own" steps share their work out themselves (DDP training, sweeps sharded by
# run_study), "dealt" ones share out their checkpoints in a process group, "main" ones run on rank 0 alone.
STEPS: dict[str, tuple[str, Callable[[StudySpec, Place], Any], str]] = {
    "train": ("training both regimes and the depth architecture", train_models, "own"),
    "sweep": ("high-pass sweeps of every layer at the swept epochs of both regimes (the spec's low-pass ones too) "
              "and the depth architecture's", run_sweeps, "own"),
    "random-null": ("random-null sweeps (quantile grid) of every final-epoch checkpoint, and Init_1 at the common eps",
             run_null_sweeps, "own"),
    "ablate": ("whole-layer ablation of every layer of every final-epoch checkpoint", deal_ablations, "dealt"),
    "check": ("the settings check (full thresholds and BatchNorm images on a subset of layers)", run_checks, "own"),
    "pgd": ("every layer of the re-check's final checkpoints under PGD beside FGSM", pgd_rows, "own"),
    "probe": ("the re-initialisation probe of every swept checkpoint", deal_probes, "dealt"),
    "report": ("the models under PGD, APGD-CE, APGD-DLR and Square; training curves", run_field_report, "main"),
    "retrain": ("selective retraining against matched random layer sets", run_retraining, "main"),
    "power": ("retraining the top/bottom-k layers by the random-null score against stratified random k-sets",
              lambda s, at: None if s.source(STANDARD) else run_power_retraining(s, at, null_scores(s, at)), "main"),
}
GROUP_TIMEOUT = timedelta(hours=24)  # a rank waits this long for the others' share of a step


@contextmanager
def _group(at: Place) -> Iterator[Place]:
    """Under torchrun, the processes joined in one gloo group (each on its own device); ``at`` for this process."""
    with process_group(pick_device(at.device), backend="gloo", timeout=GROUP_TIMEOUT) as device:
        yield replace(at, device=str(device)) if world_size() > 1 else at


def _say(text: str) -> None:
    """Print on rank 0 only (every process under torchrun runs the same steps)."""
    if is_main():
        print(text, flush=True)


def _stamps(root: str | Path) -> dict[Path, int]:
    """The size of every file under ``root``. A step that computes writes new files (or grows one); one that
    only rewrites a summary with the same content (a rerun) leaves this unchanged."""
    return {p: p.stat().st_size for p in Path(root).rglob("*") if p.is_file()}


def run_record(at: Place) -> dict[str, Any]:
    """The run's record: per step, the seconds spent computing (over every run that wrote something)."""
    path = Path(at.models_root) / "run.json"
    return load_json(path) if path.is_file() else {"steps": {}}


def run_steps(s: StudySpec, at: Place, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run every step (or ``only`` those) in order, timing the ones that compute; return the run's record."""
    record = run_record(at)
    for number, (name, (text, step, how)) in enumerate(STEPS.items(), 1):
        if only is not None and name not in only:
            continue
        _say(f"[{number}/{len(STEPS)}] {text}")
        before, tic = _stamps(at.models_root), time.perf_counter()
        try:
            if how == "own":
                step(s, at)
            else:
                with _group(at) as here:
                    (on_all if how == "dealt" else on_main)(lambda: step(s, here))  # noqa: B023 (called at once)
        finally:  # an interrupted step's time counts too: the run that finishes it adds the rest
            seconds = time.perf_counter() - tic
            if _stamps(at.models_root) != before and is_main():
                _add_time(record, name, seconds, at)
        _say(f"      done in {seconds:.0f} s")
    return record


def _add_time(record: dict[str, Any], name: str, seconds: float, at: Place) -> None:
    """Add a step's computing time to the run's record, with the 5-minute load average at its end (above the
    core count, other work shared the CPU), and save the record."""
    entry = record["steps"].setdefault(name, {"seconds": 0.0, "runs": 0, "load": 0.0})
    entry["seconds"] += seconds
    entry["runs"] += 1
    entry["load"] = max(entry.get("load", 0.0), os.getloadavg()[1])
    save_json(record, Path(at.models_root) / "run.json")


def _table_is_current(s: StudySpec, at: Place, record: Mapping[str, Any]) -> bool:
    """Whether the findings table was made from these settings and this record: then no step has computed
    anything since, and the table need not be collected again (it opens with those rows)."""
    if not at.table.is_file():
        return False
    head = table_csv(pd.DataFrame(settings_rows(s, at, record), columns=list(COLUMNS)))
    with at.table.open() as f:
        return f.read(len(head)) == head


def write_page(table: str | Path, page: str | Path) -> bool:
    """Render the page from the findings table at ``table`` into ``page``; whether it changed."""
    return write_if_changed(render(pd.read_csv(table)), Path(page))


def prepare(s: StudySpec, at: Place, budget: float | None = None) -> str:
    """Before any work: refuse an ``out`` that is a file and a model from elsewhere that does not load or fit, print
    the plan (each step's passes and predicted time), refuse it over ``budget`` minutes, and claim the models root and
    ``out`` for this spec; the plan's text."""
    for folder in (at.models_root, at.out):
        if Path(folder).exists() and not Path(folder).is_dir():
            raise InvalidArgument(f"{folder} is a file: --out and --models-root name folders")
    check_sources(s)
    steps = predict(s, at)
    text = plan_text(s, at, steps)
    print(text, flush=True)
    check_budget(steps, budget, lambda: smallest_plan(s, at))
    claim_folder(s, at.models_root, "--models-root")
    claim_folder(s, at.out, "--out")
    return text


def run_findings(s: StudySpec, at: Place, budget: float | None = None) -> dict[str, Any]:
    """Print the plan, run every step, then write the findings table, the page and its figures under ``at.out``;
    return the table's path, the page's, the figures', the run's record and the plan's text.

    Under ``torchrun`` every process runs this in one process group (a group made twice in one process would
    reuse the first one's addresses): the steps share their work out (:data:`STEPS`), every process reads the
    results back into the table (the re-check's reading joins the group) and rank 0 writes the page."""
    with _group(at) as here:
        plan = on_main(lambda: prepare(s, at, budget))
        record = run_steps(s, here)
        _say("[page] the findings table, the page and its figures")
        if not (world_size() == 1 and _table_is_current(s, at, record)):
            table = table_csv(collect(s, here, record))  # the same on every process
            if is_main():
                write_if_changed(table, at.table)
    if not is_main():
        return {"table": at.table, "page": at.page, "figures": [], "record": record, "plan": plan}
    write_page(at.table, at.page)
    figures = draw_figures(s, at, pd.read_csv(at.table))
    print(f"page: {at.page}\ntable: {at.table}\nspec: {Path(at.models_root) / 'spec.json'}", flush=True)
    return {"table": at.table, "page": at.page, "figures": figures, "record": record, "plan": plan}
