"""The honest evaluation of the defensive perturbation: the images of every row, the attack ensemble, the table.

Every row is the accuracy of the model on one set of images built from the test images
``x`` (``D`` is the defense, ``PGD`` the attack it is tuned against):

- undefended model: ``clean`` (``x``), ``attacked`` (``PGD(x)``), and the ensemble on ``x``:
  ``undefended_pgd`` (PGD from ``restarts`` fresh random starts, kept where ``attacked``
  already fools), ``undefended_apgd_ce`` and ``undefended_apgd_dlr`` (APGD, ``apgd_steps``
  iterations, :mod:`robustness.attacks.apgd`), ``undefended_square`` (Square, ``square_queries`` queries,
  score-based: :mod:`robustness.defense.square`).
- defended model: ``defended_clean`` (``D(x)``), and per threat model:

  ========================  ==============================  ====================================
  row                       preemptive (defend, attack)     test-time (attack, defend)
  ========================  ==============================  ====================================
  ``defended_attacked``     ``PGD(D(x))``                   ``D(PGD(x))``
  ``transfer``              ``D(x) + (PGD(x) - x)``         ``D(PGD(x))`` (the same images)
  ``adaptive``              PGD, fresh starts, on ``D(x)``  ``D(x')``, ``x'`` = PGD through ``D``
  ``apgd_ce``/``apgd_dlr``  APGD on ``D(x)``                ``D(x')``, ``x'`` = APGD through ``D``
  ``square``                Square on ``D(x)``              ``D(x')``, ``x'`` = Square querying
                                                            the pipeline ``x -> f(D(x))``
  ========================  ==============================  ====================================

  "Through ``D``" is BPDA: the forward pass runs the defense, the backward pass takes it as the
  identity, and with ``eot_samples`` > 1 the logits are averaged over that many draws of the
  defense's randomness (EOT; :class:`~robustness.defense.perturbation.StraightThrough`). In oracle mode each
  true class is attacked on its own, with that class as the defense's label.

The ensemble (``ensemble``: any of ``"pgd"``, ``"apgd-ce"``, ``"apgd-dlr"``, ``"square"``) chooses the
``adaptive``/``undefended_pgd``, APGD and Square rows; the others are always there. Worst cases, intervals,
the gain and distances are computed by :func:`robustness.defense.report.summarise_defense`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..attacks import APGD, PGD, Square, geometry
from ..errors import InvalidArgument
from ..runtime import frozen_eval, progress
from ..vocab import LabelMode, Threat
from .perturbation import Defense, StraightThrough, _check_images, attack_deployed
from .report import summarise_defense
from .square import SQUARE_QUERIES, square_through_defense

EnsembleAttack = Literal["pgd", "apgd-ce", "apgd-dlr", "square"]
ENSEMBLE: tuple[EnsembleAttack, ...] = get_args(EnsembleAttack)
# The row each ensemble attack fills against the defended system, and against the undefended model.
_DEFENDED_ROW: dict[EnsembleAttack, str] = {"pgd": "adaptive", "apgd-ce": "apgd_ce", "apgd-dlr": "apgd_dlr",
                                            "square": "square"}
_UNDEFENDED_ROW: dict[EnsembleAttack, str] = {"pgd": "undefended_pgd", "apgd-ce": "undefended_apgd_ce",
                                              "apgd-dlr": "undefended_apgd_dlr", "square": "undefended_square"}

# The attacker cannot know the random starts of the defender's own PGD, so the
# evaluation's attacks draw theirs from seeds the defense never uses.
_ATTACK_SEED = 1_000_000_007
_ADAPTIVE_SEED = 2_000_000_011

Images = dict[str, Tensor]


def _check_settings(ensemble: Sequence[str], **counts: int) -> tuple[EnsembleAttack, ...]:
    """``ensemble`` as a tuple after checking its names and that every count is an integer >= 1."""
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgument(f"{name} must be an integer >= 1, got {value!r}")
    unknown = [a for a in ensemble if a not in ENSEMBLE]
    if isinstance(ensemble, str) or unknown or len(set(ensemble)) != len(ensemble):
        raise InvalidArgument(f"ensemble takes distinct names from {', '.join(ENSEMBLE)}, got {ensemble!r}")
    return tuple(ensemble)


def _ensemble_attacks(
    defense: Defense, ensemble: Sequence[EnsembleAttack], restarts: int, apgd_steps: int, seed: int,
    square_queries: int = SQUARE_QUERIES,
) -> dict[EnsembleAttack, PGD | APGD | Square]:
    """The attack of each ensemble member, with its seeds drawn away from the defense's."""
    attacks: dict[EnsembleAttack, PGD | APGD | Square] = {}
    for name in ensemble:
        if name == "pgd":
            attacks[name] = defense.attack(seed=_ADAPTIVE_SEED + seed, restarts=restarts)
        elif name == "square":
            attacks[name] = Square(defense.eps, defense.norm, square_queries, seed=_ADAPTIVE_SEED + seed)
        else:
            loss = "ce" if name == "apgd-ce" else "dlr"
            attacks[name] = APGD(defense.eps, defense.norm, apgd_steps, (loss,), seed=_ADAPTIVE_SEED + seed)
    return attacks


def undefended_images(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    defense: Defense,
    *,
    ensemble: Sequence[EnsembleAttack] = ENSEMBLE,
    restarts: int = 5,
    apgd_steps: int = 100,
    square_queries: int = SQUARE_QUERIES,
    seed: int = 0,
) -> Images:
    """The images of the undefended rows: ``clean``, ``attacked`` and the ensemble's ``undefended_*``."""
    ensemble = _check_settings(ensemble, restarts=restarts, apgd_steps=apgd_steps, square_queries=square_queries)
    x = _check_images(model, x)
    y = torch.as_tensor(y).to(x.device)
    images = {"clean": x, "attacked": defense.attack(seed=_ATTACK_SEED + seed)(model, x, y)}
    for name, attack in _ensemble_attacks(defense, ensemble, restarts, apgd_steps, seed, square_queries).items():
        found = attack(model, x, y)
        row = _UNDEFENDED_ROW[name]
        images[row] = _keep_fooling(model, y, images["attacked"], found) if name == "pgd" else found
    return images


def threat_images(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    defense: Defense,
    *,
    threat: Threat = "preemptive",
    eot_samples: int = 1,
    restarts: int = 5,
    ensemble: Sequence[EnsembleAttack] = ENSEMBLE,
    apgd_steps: int = 100,
    square_queries: int = SQUARE_QUERIES,
    seed: int = 0,
) -> Images:
    """The images of ``clean``, ``attacked`` and every defended row (see the module's table).

    The ``adaptive`` row is, per image, the non-adaptive ``defended_attacked`` image where that
    already fools the defended model, else the adaptive attack's own.
    """
    if threat not in get_args(Threat):
        raise InvalidArgument(f"unknown threat {threat!r}: use 'preemptive' or 'test-time'")
    ensemble = _check_settings(ensemble, eot_samples=eot_samples, restarts=restarts, apgd_steps=apgd_steps,
                               square_queries=square_queries)
    x = _check_images(model, x)
    y = torch.as_tensor(y).to(x.device)
    attack = defense.attack(seed=_ATTACK_SEED + seed)
    x_adv = attack(model, x, y)
    x_def = defense(model, x, y, seed)
    images = {"clean": x, "attacked": x_adv, "defended_clean": x_def}
    if threat == "preemptive":
        images["defended_attacked"] = attack(model, x_def, y)
        images["transfer"] = (x_def + (x_adv - x)).clamp(0, 1)
    else:
        images["defended_attacked"] = images["transfer"] = defense(model, x_adv, y, seed)
    seeds = tuple(_ADAPTIVE_SEED + seed + s for s in range(eot_samples))
    for name, strong in _ensemble_attacks(defense, ensemble, restarts, apgd_steps, seed, square_queries).items():
        if threat == "preemptive":
            found = strong(model, x_def, y)
        elif isinstance(strong, Square):  # queries the deployed pipeline itself: no gradient, no BPDA
            found = defense(model, square_through_defense(model, x, y, defense, strong, seed), y, seed)
        else:
            found = defense(model, _through_defense(model, x, y, defense, strong, seeds), y, seed)
        row = _DEFENDED_ROW[name]
        images[row] = _keep_fooling(model, y, images["defended_attacked"], found) if name == "pgd" else found
    return images


def _through_defense(
    model: nn.Module, x: Tensor, y: Tensor, defense: Defense, attack: PGD | APGD, seeds: tuple[int, ...]
) -> Tensor:
    """``attack`` on the defended classifier (BPDA, EOT over ``seeds``; per class in oracle mode)."""
    return attack_deployed(attack, lambda c: StraightThrough(model, defense, seeds, c), x, y, defense.oracle)


def _keep_fooling(model: nn.Module, y: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """Per image, ``first`` where the model misclassifies it, else ``second``."""
    with torch.no_grad():
        fooled = model(first).argmax(1) != y
    return torch.where(fooled.view(-1, *[1] * (first.dim() - 1)), first, second)


def _outcomes(
    model: nn.Module, batches: list[tuple[Tensor, Tensor]], images_of: Callable[[Tensor, Tensor], Images], norm: str,
    desc: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per row and image over ``batches``: whether the model classifies the row's image correctly, and the
    image's distance from ``x`` in ``norm``."""
    correct: dict[str, list[np.ndarray]] = {}
    distance: dict[str, list[np.ndarray]] = {}
    size = geometry(norm).size
    for x, y in progress(batches, desc, leave=True):
        images = images_of(x, y)
        labels, clean = y.to(images["clean"].device), images["clean"]
        with torch.no_grad():
            for row, batch in images.items():
                correct.setdefault(row, []).append((model(batch).argmax(1) == labels).cpu().numpy())
                distance.setdefault(row, []).append(size(batch - clean).cpu().numpy())
    return ({row: np.concatenate(v) for row, v in correct.items()},
            {row: np.concatenate(v) for row, v in distance.items()})


@dataclass(frozen=True)
class DefenseEvaluation:
    """How :func:`defense_table` evaluates ``defense`` (a :class:`Defense`: the attack it defends against, its
    budget, steps and lr; its own label mode is replaced by each of ``labels``), checked when made: the
    ``threats`` and ``labels`` it is evaluated in (columns ``"<threat>/<label>"``, less those in ``skip``); the
    attack ``ensemble`` with its ``restarts``, ``apgd_steps``, ``square_queries`` (Square in the columns of
    ``square_threats`` only) and ``eot_samples``; the ``seed`` of every draw; ``ci`` and ``n_boot`` of the
    intervals."""

    defense: Defense
    threats: tuple[Threat, ...] = get_args(Threat)
    labels: tuple[LabelMode, ...] = ("predicted", "oracle")
    ensemble: tuple[EnsembleAttack, ...] = ENSEMBLE
    restarts: int = 5
    apgd_steps: int = 100
    square_queries: int = SQUARE_QUERIES
    eot_samples: int = 1
    seed: int = 0
    ci: float = 0.95
    n_boot: int = 2000
    skip: tuple[str, ...] = ()
    square_threats: tuple[Threat, ...] = get_args(Threat)

    def __post_init__(self) -> None:
        if not isinstance(self.defense, Defense):
            raise InvalidArgument(f"defense must be a Defense (the attack, budget and steps of the defensive "
                                  f"perturbation), got {type(self.defense).__name__}")
        for name in ("threats", "labels", "skip", "square_threats"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "ensemble", _check_settings(
            self.ensemble, eot_samples=self.eot_samples, restarts=self.restarts, apgd_steps=self.apgd_steps,
            square_queries=self.square_queries))
        for threat in self.threats:
            if threat not in get_args(Threat):
                raise InvalidArgument(f"unknown threat {threat!r}: use 'preemptive' or 'test-time'")
        if not self.labels or not self.threats or all(f"{t}/{label}" in self.skip for t in self.threats
                                                      for label in self.labels):
            raise InvalidArgument("pass at least one threat model and one label mode (not all skipped)")

    def defenses(self) -> dict[LabelMode, Defense]:
        """The defense of each label mode (each checks its own settings)."""
        return {label: replace(self.defense, label=label) for label in self.labels}


def defense_table(model: nn.Module, loader: DataLoader, evaluation: DefenseEvaluation) -> dict[str, dict[str, Any]]:
    """The defense evaluated as ``evaluation`` says (:class:`DefenseEvaluation`), for every threat model and
    label mode, keyed ``"<threat>/<label>"`` (print it with
    :func:`~robustness.defense.report.format_results`).

    Each column holds every row's accuracy with its Wilson interval (coverage ``ci``), the per-example
    worst cases of the defended and of the undefended model under the same ``ensemble``, their
    difference ``gain`` with a paired bootstrap interval (``n_boot`` resamples of the images), and each
    row's distance from ``x`` (see :func:`~robustness.defense.report.summarise_defense`). The undefended rows
    are computed once and shared by all columns; every column sees the same images.

    ``restarts``: fresh starts of the ensemble's PGD; ``apgd_steps``: iterations of APGD-CE and
    APGD-DLR (100, as in AutoAttack: fewer understate the attack); ``eot_samples``: defense draws
    averaged by the attacks through the defense (test-time); ``square_queries``: Square's queries per
    image (at least 1,000 for a real Square evaluation); ``skip``: ``"<threat>/<label>"`` columns left
    out (e.g. ``("test-time/oracle",)``); ``square_threats``: the threat models whose columns include Square
    when it is in ``ensemble`` (a column without it also leaves it out of its undefended worst case, so
    both sides face the same ensemble). Cost: preemptive columns add ``2 × apgd_steps`` passes and up
    to ``square_queries`` forward passes per image; test-time columns run the defense at every step of
    every ensemble attack and at every Square query, ``def_steps × (steps + 2) × eot_samples`` passes each.
    """
    e = evaluation
    defenses = e.defenses()
    ensemble, norm, skip, eot_samples = e.ensemble, e.defense.norm, e.skip, e.eot_samples
    batches = [(x, torch.as_tensor(y)) for x, y in loader]  # one pass: every column pairs the same images
    if sum(len(y) for _, y in batches) == 0:
        raise InvalidArgument("the loader yielded no images: pass a loader over a non-empty dataset")
    common = dict(ensemble=ensemble, restarts=e.restarts, apgd_steps=e.apgd_steps, square_queries=e.square_queries,
                  seed=e.seed)
    results = {}
    with frozen_eval(model):
        reference = next(iter(defenses.values()))
        base = _outcomes(model, batches, lambda x, y: undefended_images(model, x, y, reference, **common), norm,
                         "evaluate the undefended model")
        for threat in e.threats:
            for label, defense in defenses.items():
                if f"{threat}/{label}" in skip:
                    continue
                members = tuple(a for a in ensemble if a != "square" or threat in e.square_threats)

                def images_of(x: Tensor, y: Tensor, defense: Defense = defense, threat: Threat = threat,
                              members: tuple[EnsembleAttack, ...] = members) -> Images:
                    return threat_images(model, x, y, defense, threat=threat, eot_samples=eot_samples,
                                         **{**common, "ensemble": members})

                correct, distance = _outcomes(model, batches, images_of, norm,
                                              f"evaluate defense ({threat}, {label} labels)")
                shared = [_UNDEFENDED_ROW[a] for a in members]
                undefended = [{r: v for r, v in rows.items() if r in shared or r not in _UNDEFENDED_ROW.values()}
                              for rows in base]
                results[f"{threat}/{label}"] = summarise_defense(
                    {**correct, **undefended[0]}, {**distance, **undefended[1]}, defense, ci=e.ci, n_boot=e.n_boot,
                    seed=e.seed, threat=threat, ensemble=list(members), apgd_steps=e.apgd_steps, restarts=e.restarts,
                    eot_samples=eot_samples, square_queries=e.square_queries,
                )
    return results


def evaluate_defense(
    model: nn.Module,
    loader: DataLoader,
    *,
    threat: Threat = "preemptive",
    label: LabelMode = "predicted",
    **settings: Any,
) -> dict[str, Any]:
    """One column of :func:`defense_table`: the defense evaluated in one threat model and label mode;
    ``settings`` are the fields of :class:`Defense` (``eps``, ``alpha``, ``steps`` and ``budget`` are required)
    and the other fields of :class:`DefenseEvaluation`."""
    own = {f.name for f in fields(Defense)} - {"label"}
    defense = Defense(**{k: v for k, v in settings.items() if k in own})
    evaluation = DefenseEvaluation(defense, threats=(threat,), labels=(label,),
                                   **{k: v for k, v in settings.items() if k not in own})
    return defense_table(model, loader, evaluation)[f"{threat}/{label}"]
