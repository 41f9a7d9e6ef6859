"""Running a filtering study: sweeps over many checkpoints, written to resumable result files.

:func:`run_study` settles each checkpoint's eps (calibrated where the study asks for it),
then runs the units of :func:`robustness.study.plan.plan_units` checkpoint by checkpoint. A global
unit writes its result file directly; a local unit (one layer) writes a part file, and the
parts of one (checkpoint, filter) are merged into its result file once every layer is
there. Every write is atomic and finished units are skipped, so a killed run, rerun, only
computes what is missing, and no two units ever write the same file. :func:`run_recheck`
re-checks layers of an FGSM study with PGD.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from itertools import groupby
from pathlib import Path

from torch import nn

from ..attacks import FGSM, Attack, calibrate_eps, make_attack
from ..distributed import SWEEP_TIMEOUT, gathered, on_all, on_main, process_group, shard, world_size
from ..errors import InvalidArgument
from ..files import writable_folder
from ..filtering import (
    Evaluation,
    global_analysis,
    load_result_json,
    load_results,
    local_analysis,
    measure_reference,
    preserved_batchnorm,
    recalibrate_batchnorm,
    save_results,
)
from ..models import arch_depths, model_depths, read_checkpoint
from ..runtime import autocast, frozen_eval, pick_device, progress
from .images import StudyData, study_data
from .plan import (
    StudyConfig,
    StudyPlan,
    Unit,
    attack_params,
    attack_tag,
    finished_file,
    is_done,
    load_study_model,
    make_plan,
    rechecked_eps,
    recorded_eps,
    result_path,
    settings_meta,
    unit_path,
    with_eps,
)


def checkpoint_eps(
    config: StudyConfig, init: int, epoch: int, data: StudyData, model: nn.Module | None = None,
    plan: StudyPlan | None = None,
) -> float:
    """The eps the study uses on checkpoint ``(init, epoch)``.

    The attack's own eps; for a re-check, the eps of the results it re-checks; with
    ``calibrate_eps``, the eps already recorded for this checkpoint, or else the one found by
    bisection (:func:`robustness.attacks.evaluation.calibrate_eps`) on the held-out test images, with
    the unfiltered model's BatchNorm statistics as its sweeps measure it (re-estimated with
    ``bn="recalibrate"``). ``model`` is the loaded checkpoint, when it is; ``plan`` the study's
    :class:`StudyPlan`, when made.
    """
    if config.recheck_of is not None:
        return rechecked_eps(config, init, epoch)
    if config.calibrate_eps is None:
        return config.attack.eps
    plan = plan or make_plan(config)
    recorded = recorded_eps(config, init, epoch, plan)
    if recorded is not None:
        return recorded
    device = data.x.device
    if model is None:
        model = load_study_model(config, plan.checkpoints[init, epoch], device)
    with frozen_eval(model), preserved_batchnorm(model), autocast(device, config.precision):
        if data.bn_images is not None:
            recalibrate_batchnorm(model, data.bn_images)
        try:
            return calibrate_eps(model, data.eps_images, config.calibrate_eps, partial(with_eps, config.attack))
        except InvalidArgument as err:
            raise InvalidArgument(
                f"checkpoint Init_{init} epoch {epoch}: {err}, give a fixed eps instead of calibrate_eps, or leave "
                f"this checkpoint out (--checkpoint-epochs)"
            ) from None


def checkpoint_epsilons(
    config: StudyConfig, selected: Iterable[tuple[int, int]], data: StudyData, plan: StudyPlan | None = None
) -> dict[tuple[int, int], float]:
    """:func:`checkpoint_eps` of each selected ``(init, epoch)``."""
    return {(init, epoch): checkpoint_eps(config, init, epoch, data, plan=plan) for init, epoch in selected}


# ---------------------------------------------------------------- running and merging


@dataclass(frozen=True)
class CheckpointRun:
    """What every unit of one checkpoint shares: its attack (at its eps) and its unfiltered reference."""

    attack: Attack
    reference: Evaluation


def run_unit(config: StudyConfig, unit: Unit, model: nn.Module, data: StudyData, run: CheckpointRun) -> Path:
    """Run one unit on its checkpoint's ``model`` (frozen, on the device of ``data``) and write its files."""
    shared = {"batch_size": config.batch_size, "reference": run.reference, "bn_images": data.bn_images,
              "grid": config.grid, "null_masks": config.null_masks if config.random_baseline else 0,
              "seed": config.seed}
    evaluated = (data.x, data.y)
    if unit.scope == "local":
        (result,) = local_analysis(
            model, evaluated, unit.kind, run.attack, config.thresholds, layers=[unit.layer],
            sequential=config.sequential, **shared
        ).values()
    else:
        result = global_analysis(
            model, evaluated, unit.kind, run.attack, config.thresholds, alpha_range=config.alpha_range, **shared
        )
    # The source is recorded but not compared on a rerun: its folder already pins the model (a file's content).
    source = {"source": config.source} if config.source is not None else {}
    meta = {**settings_meta(config, unit), **source, "eps": run.attack.eps, "attack_params": attack_params(run.attack),
            "ref_clean_acc": run.reference.clean_acc, "ref_adv_acc": run.reference.adv_acc,
            "depth": arch_depths(config.arch, config.dataset) if config.source is None else model_depths(
                model, tuple(data.x.shape[1:]))}
    return save_results(meta, [result], unit_path(config, unit))


def run_units(
    config: StudyConfig, units: Sequence[Unit], data: StudyData | None = None,
    epsilons: Mapping[tuple[int, int], float] | None = None, plan: StudyPlan | None = None,
) -> list[Path]:
    """Run the units not yet written, loading each checkpoint once; return the files of all of them.

    ``units`` may be any part of :func:`plan_units` (e.g. one rank's share): a unit
    only ever writes its own file. ``data`` is :func:`study_data`, when loaded;
    ``epsilons`` the :func:`checkpoint_eps` of some checkpoints, when known; ``plan`` the study's
    :class:`StudyPlan`, when made.
    """
    plan = plan or make_plan(config)
    config, device = plan.config, pick_device(config.device)
    for (init, epoch), group in groupby(units, key=lambda u: u.checkpoint):
        todo = [u for u in group if not is_done(config, u)]
        if not todo:
            continue
        data = data or study_data(config, device)
        model = load_study_model(config, plan.checkpoints[init, epoch], device)
        with frozen_eval(model), autocast(device, config.precision):
            eps = (epsilons or {}).get((init, epoch))
            if eps is None:
                eps = checkpoint_eps(config, init, epoch, data, model, plan)
            attack = with_eps(config.attack, eps)
            reference = measure_reference(model, (data.x, data.y), attack, batch_size=config.batch_size,
                                          bn_images=data.bn_images)
            for unit in progress(todo, f"Init_{init} epoch {epoch}"):
                run_unit(config, unit, model, data, CheckpointRun(attack, reference))
    return [unit_path(config, u) for u in units]


def merge_results(
    config: StudyConfig, only: Sequence[tuple[int, int]] | None = None, plan: StudyPlan | None = None
) -> list[Path]:
    """Write the result file of every local (checkpoint, filter) whose layer parts all exist, then delete
    the parts; return the study's result files that exist. ``only`` limits it to those ``(init, epoch)``;
    ``plan`` is the study's :class:`StudyPlan`, when made.

    Call it from one process (e.g. rank 0 after a barrier): it is the only writer of local result files.
    """
    units = [u for u in (plan or make_plan(config)).units if only is None or u.checkpoint in only]
    written = []
    for (init, epoch, kind, scope), group in groupby(units, key=lambda u: (u.init, u.epoch, u.kind, u.scope)):
        final = result_path(config, init, epoch, kind, scope)
        parts = [unit_path(config, u) for u in group]
        if scope == "local" and not final.is_file() and all(p.is_file() for p in parts):
            loaded = [load_results(p) for p in parts]
            unshared = ("ref_clean_acc", "ref_adv_acc", "source")
            metas = {str({k: meta[k] for k in meta if k not in unshared}) for meta, _ in loaded}
            if len(metas) > 1:
                raise InvalidArgument(f"the layer parts under {parts[0].parent} disagree on their set-up or eps: "
                                      f"delete that folder and rerun")
            save_results(loaded[0][0], [r for _, part in loaded for r in part.values()], final)
        if scope == "local" and final.is_file():
            folder = parts[0].parent
            shutil.rmtree(folder, ignore_errors=True)
            with suppress(OSError):  # .parts/ goes once no other (checkpoint, filter) has parts left in it
                folder.parent.rmdir()
        if final.is_file():
            written.append(final)
    return written


def check_inputs(config: StudyConfig, pending: Sequence[tuple[int, int]], plan: StudyPlan) -> None:
    """Before the first sweep: the results folder can be written, and every checkpoint the study will read is a
    whole, finite checkpoint of its architecture (:func:`read_checkpoint`), so that none fails after others
    were swept."""
    writable_folder(config.models_root)
    if config.source is None:
        for checkpoint in pending:
            read_checkpoint(plan.checkpoints[checkpoint], config.arch, config.dataset)


def run_study(config: StudyConfig) -> list[Path]:
    """Run a whole study, checkpoint by checkpoint; return its result files.

    The study is planned once (:func:`make_plan`). Each checkpoint's eps is settled first
    (calibrated where needed), so a checkpoint that cannot reach the target fails before any
    sweep runs. Rerunning after an interruption computes only the units whose files are
    missing and ends with the same files as an uninterrupted run.

    Under ``torchrun`` with N processes, each rank runs its :func:`~robustness.distributed.shard`
    of the units (the plan depends only on ``config`` and the checkpoints on disk, so every
    rank, on any node, makes the same one) and writes only its units' files; the checkpoints
    that need an eps are shared out the same way and every rank gets every eps, so all units
    of a checkpoint use the same. Once all are done, rank 0 merges the layer parts into the
    result files, which equal a single-process run's, and every rank returns them. Across
    nodes, ``models_root`` must be one shared folder.
    """
    config = config.validate()
    with process_group(pick_device(config.device), backend="gloo", timeout=SWEEP_TIMEOUT) as device:
        config = replace(config, device=str(device))
        plan = make_plan(config)
        pending = list(dict.fromkeys(u.checkpoint for u in plan.units if not is_done(config, u)))
        if pending:
            on_main(lambda: check_inputs(config, pending, plan))
            data = study_data(config, device)
            epsilons: dict[tuple[int, int], float] = {}
            for share in gathered(lambda: checkpoint_epsilons(config, shard(pending), data, plan)):
                epsilons |= share
            groups = [list(g) for _, g in groupby(shard(plan.units), key=lambda u: u.checkpoint)]
            alone = world_size() == 1  # then each checkpoint's parts are merged as soon as it is done

            def run_mine() -> None:
                for group in progress(groups, "checkpoints", leave=True):
                    run_units(config, group, data, epsilons, plan)
                    if alone:
                        merge_results(config, [group[0].checkpoint], plan)

            on_all(run_mine)
        return on_main(lambda: merge_results(config, plan=plan))


def run_recheck(
    config: StudyConfig, layers: Mapping[tuple[int, int], Sequence[str]], *, steps: int = 20, restarts: int = 2,
) -> dict[tuple[int, int], Path]:
    """Re-check layers of an FGSM study with PGD: for each ``(init, epoch)`` in ``layers``, a local sweep of
    exactly those layers under PGD-L∞ at the eps that checkpoint's FGSM results used.

    ``config`` is the FGSM study (one filter: call once per filter); its local result file
    of each checkpoint must exist. The re-check uses ``steps`` iterations of step
    ``2.5 eps / steps`` with a random start and ``restarts`` restarts (seeded by
    ``config.seed``), and the study's thresholds, grid, BatchNorm mode and images
    (evaluation, BatchNorm and held-out ones alike), without the random null model. Each
    checkpoint's re-check is its own resumable result file, tagged
    ``pgd-linf_a<2.5/steps>_k<steps>_r<restarts>_recheck_of_<FGSM tag>``; returns their paths
    (checkpoints with no layers are skipped).
    """
    config = config.validate()
    if len(config.kinds) != 1:
        raise InvalidArgument(f"a re-check covers one filter, the config has {config.kinds}: call once per filter")
    if not isinstance(config.attack, FGSM) or config.recheck_of is not None:
        raise InvalidArgument("run_recheck re-checks the results of an FGSM study: give that study's config")
    pgd = make_attack("pgd", 1.0, steps=steps, restarts=restarts, seed=config.seed)
    written = {}
    for (init, epoch), names in layers.items():
        if not names:
            continue
        source = finished_file(config, Unit(init, epoch, config.kinds[0], "local"))
        if source is None:
            raise InvalidArgument(f"the FGSM local {config.kinds[0]} results of Init_{init} epoch {epoch} are not "
                                  f"complete: run the FGSM study first")
        swept = [r["layer"] for r in load_result_json(source)["results"]]
        if unknown := [name for name in names if name not in swept]:
            raise InvalidArgument(f"{source} has no sweep of {', '.join(unknown)}: re-check layers it swept "
                                  f"({', '.join(swept)})")
        recheck = replace(config, attack=pgd, inits=(init,), epochs=(epoch,), scopes=("local",), layers=tuple(names),
                          random_baseline=False, recheck_of=attack_tag(config))
        (written[init, epoch],) = run_study(recheck)
    return written
