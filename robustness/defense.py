"""Defensive perturbation and its honest evaluation (SPEC 5).

Before an image is classified, a small perturbation ``δ`` is optimised with Adam so
that both the image and a PGD attack on it are classified as ``ŷ``::

    minimise over δ:  L(f(x + δ), ŷ) + L(f(PGD(x + δ, ŷ)), ŷ)
    subject to:       ‖δ‖ ≤ budget (the attack's norm),  x + δ ∈ [0, 1]

``ŷ`` is the model's own prediction on ``x`` (``label="predicted"``, deployable), or
the true label (``label="oracle"``, the original project's setting: it needs labels a
deployed system does not have, and every table marks it). The gradient of the second
term flows through ``x + δ`` into the PGD output with the PGD perturbation treated as
a constant, as in the original.

Two threat models: *preemptive* (the image is defended, then the attacker perturbs the
defended image) and *test-time* (the attacker perturbs first, the defense then runs on
the attacked image). :func:`evaluate_defense` reports, besides the non-adaptive attack,
an adaptive attack and a transfer attack, and the worst of the three.

Cost: one defense call runs ``def_steps × (steps + 2)`` forward/backward passes; the
test-time adaptive attack runs the defense inside every attack step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import paths
from .attacks import PGD, Norm, geometry
from .data import load_dataset, make_loader
from .errors import DataNotFoundError, InvalidArgument
from .files import save_npz
from .plots import plot_tsne
from .report import format_table
from .runtime import frozen_eval, model_device, pick_device, progress
from .train import TrainConfig, load_checkpoint, train

LabelMode = Literal["predicted", "oracle"]
Threat = Literal["preemptive", "test-time"]
Split = Literal["train", "valid"]

ROWS = ("clean", "attacked", "defended_clean", "defended_attacked", "adaptive", "transfer", "worst_case")
# The rows in which the defended system is under attack; ``worst_case`` is their minimum.
ATTACKED_ROWS = ("defended_attacked", "adaptive", "transfer")

# The attacker cannot know the random starts of the defender's own PGD, so the
# evaluation's attacks draw theirs from seeds the defense never uses.
_ATTACK_SEED = 1_000_000_007
_ADAPTIVE_SEED = 2_000_000_011


@dataclass(frozen=True)
class Defense:
    """A defensive perturbation against PGD(``eps``, ``alpha``, ``steps``, ``norm``), as a callable.

    ``budget`` bounds ``‖δ‖`` in the attack's norm; ``None`` or ``math.inf`` means
    unbounded (the original's setting), which :attr:`bound` reports as ``inf``.
    """

    eps: float
    alpha: float
    steps: int
    budget: float | None
    norm: Norm = "linf"
    def_steps: int = 79
    lr: float = 0.1
    label: LabelMode = "predicted"

    def __post_init__(self) -> None:
        geometry(self.norm)
        PGD(self.eps, self.alpha, self.steps, self.norm)  # validates eps, alpha and steps
        if self.label not in get_args(LabelMode):
            raise InvalidArgument(
                f"unknown label mode {self.label!r}: use 'predicted' (the model's own prediction) "
                "or 'oracle' (the true labels, which must then be passed as y)"
            )
        if self.budget is not None and (not _is_number(self.budget) or math.isnan(self.budget) or self.budget < 0):
            raise InvalidArgument(
                f"budget must be a number >= 0 (or None / inf for an unbounded defense), got {self.budget!r}"
            )
        if not isinstance(self.def_steps, int) or isinstance(self.def_steps, bool) or self.def_steps < 0:
            raise InvalidArgument(f"def_steps must be an integer >= 0, got {self.def_steps!r}")
        if not _is_number(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InvalidArgument(f"lr must be a finite number > 0, got {self.lr!r}")

    @property
    def oracle(self) -> bool:
        """Whether the defense reads the true labels (not available at deployment)."""
        return self.label == "oracle"

    @property
    def bound(self) -> float:
        """The budget as a number: ``inf`` when unbounded."""
        return math.inf if self.budget is None else float(self.budget)

    def attack(self, seed: int = 0, restarts: int = 1) -> PGD:
        """The PGD attack this defense is optimised against, with the given seed and restarts."""
        return PGD(self.eps, self.alpha, self.steps, self.norm, restarts=restarts, seed=seed)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor | None = None, seed: int = 0, show_progress: bool = True
    ) -> Tensor:
        """The defended images ``x + δ`` (detached, on the model's device).

        ``y`` is read only in oracle mode. The model's mode and ``requires_grad``
        flags are restored on exit.
        """
        x = _check_images(model, x)
        with frozen_eval(model), torch.enable_grad():
            target = self._target(model, x, y)
            geo = geometry(self.norm)
            delta = torch.zeros_like(x, requires_grad=True)
            optimizer = torch.optim.Adam([delta], lr=self.lr)
            steps = range(self.def_steps)
            for step in progress(steps, "defensive perturbation") if show_progress else steps:
                x_def = (x + delta).clamp(0, 1)
                x_adv = self.attack(seed=seed * self.def_steps + step)(model, x_def.detach(), target)
                # The PGD perturbation is a constant: the gradient reaches δ through x + δ only.
                x_adv = x_def + (x_adv - x_def).detach()
                loss = F.cross_entropy(model(x_def), target, reduction="sum") + F.cross_entropy(
                    model(x_adv), target, reduction="sum"
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    if self.budget is not None and math.isfinite(self.budget):
                        delta.copy_(geo.project(delta, self.budget))
                    # Clipping into [0, 1] moves each pixel towards x, so δ stays in the ball.
                    delta.copy_((x + delta).clamp(0, 1) - x)
            return (x + delta).detach().clamp(0, 1)

    def _target(self, model: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
        """The label ``ŷ`` the defense steers towards: the prediction, or in oracle mode ``y``."""
        with torch.no_grad():
            logits = model(x)
        if not self.oracle:
            return logits.argmax(1)
        if y is None:
            raise InvalidArgument("label='oracle' uses the true labels: pass y, or use label='predicted'")
        y = torch.as_tensor(y)
        if y.dim() != 1 or len(y) != len(x) or y.is_floating_point() or y.is_complex():
            raise InvalidArgument(f"y must hold one integer label per image: x has {len(x)}, y is {tuple(y.shape)}")
        if len(y) and (y.min() < 0 or y.max() >= logits.shape[1]):
            raise InvalidArgument(f"labels must lie in [0, {logits.shape[1] - 1}], got {y.min()}..{y.max()}")
        return y.to(device=x.device, dtype=torch.long)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_images(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` as a detached ``(N, C, H, W)`` float tensor in ``[0, 1]`` on the model's device."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InvalidArgument(f"x must be a float tensor of shape (N, C, H, W), got {shape}: add a batch dimension")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise InvalidArgument(
            f"images must lie in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]: "
            "pass unnormalised images (the models normalise inside)"
        )
    return x.detach().to(model_device(model))


def defensive_perturbation(
    model: nn.Module,
    x: Tensor,
    *,
    norm: Norm = "linf",
    eps: float,
    alpha: float,
    steps: int,
    budget: float | None,
    def_steps: int = 79,
    lr: float = 0.1,
    label: LabelMode = "predicted",
    y: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """The defended images ``x + δ``, with ``δ`` minimising SPEC 5's objective (see :class:`Defense`).

    ``label="predicted"`` never reads ``y``; ``label="oracle"`` needs it. ``budget``
    bounds ``‖δ‖`` in ``norm``; pass ``math.inf`` (or ``None``) to leave it unbounded.
    """
    defense = Defense(eps, alpha, steps, budget, norm, def_steps, lr, label)
    return defense(model, x, y, seed)


class StraightThrough(nn.Module):
    """The defended classifier for an adaptive (BPDA) attack: the forward pass runs the
    defense, the backward pass treats it as the identity, ``x + (defense(x) - x).detach()``.

    The defense starts its inner PGD at random points, so it is random; with several
    ``seeds`` the logits are averaged over that many draws (EOT). ``label`` fixes ``ŷ``
    for every image (how the oracle mode is attacked one true class at a time).
    """

    def __init__(self, model: nn.Module, defense: Defense, seeds: tuple[int, ...], label: int | None = None):
        super().__init__()
        self.model, self.defense, self.seeds, self.label = model, defense, seeds, label

    def forward(self, x: Tensor) -> Tensor:
        y = None if self.label is None else torch.full((len(x),), self.label, dtype=torch.long, device=x.device)
        defended = (self.defense(self.model, x, y, seed, show_progress=False) for seed in self.seeds)
        logits = [self.model(x + (x_def - x).detach()) for x_def in defended]
        return torch.stack(logits).mean(0)


def _adaptive_test_time(
    model: nn.Module, x: Tensor, y: Tensor, defense: Defense, *, attack: PGD, seeds: tuple[int, ...]
) -> Tensor:
    """PGD through the defense (BPDA, EOT over ``seeds``). In oracle mode the defense of each
    image needs its true label; PGD drops fooled images from its batch, so each class is
    attacked on its own, with that class as the defense's label."""
    if not defense.oracle:
        return attack(StraightThrough(model, defense, seeds), x, y)
    x_adv = x.clone()
    for c in y.unique().tolist():
        rows = y == c
        x_adv[rows] = attack(StraightThrough(model, defense, seeds, c), x[rows], y[rows])
    return x_adv


def threat_images(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    defense: Defense,
    *,
    threat: Threat = "preemptive",
    eot_samples: int = 1,
    restarts: int = 5,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The images the classifier sees in each row of the evaluation (all rows but ``worst_case``).

    - ``clean``: ``x``; ``attacked``: PGD on the undefended model; ``defended_clean``: ``D(x)``.
    - preemptive: ``defended_attacked`` is PGD on ``D(x)``; ``transfer`` is ``D(x)`` plus the
      perturbation PGD found on the undefended ``x``. The attack comes after the defense, so
      there is no defense to differentiate through: the adaptive attacker avoids the random
      starts the defense was tuned against, running PGD from ``restarts`` fresh ones.
    - test-time: ``defended_attacked`` is ``D(PGD(x))``; made on the undefended model, it is
      also the transfer attack, so ``transfer`` repeats it. The adaptive attacker runs PGD
      through the defense (:class:`StraightThrough`: BPDA, EOT over ``eot_samples`` draws).

    The adaptive attacker also knows the non-adaptive attack: per image it keeps that one
    where it already fools the defended model, else its own.
    """
    if threat not in get_args(Threat):
        raise InvalidArgument(f"unknown threat {threat!r}: use 'preemptive' or 'test-time'")
    for name, value in (("eot_samples", eot_samples), ("restarts", restarts)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidArgument(f"{name} must be an integer >= 1, got {value!r}")
    x = _check_images(model, x)
    y = torch.as_tensor(y).to(x.device)
    attack = defense.attack(seed=_ATTACK_SEED + seed)
    x_adv = attack(model, x, y)
    x_def = defense(model, x, y, seed)
    images = {"clean": x, "attacked": x_adv, "defended_clean": x_def}
    if threat == "preemptive":
        images["defended_attacked"] = attack(model, x_def, y)
        images["transfer"] = (x_def + (x_adv - x)).clamp(0, 1)
        adaptive = defense.attack(seed=_ADAPTIVE_SEED + seed, restarts=restarts)(model, x_def, y)
    else:
        images["defended_attacked"] = images["transfer"] = defense(model, x_adv, y, seed)
        seeds = tuple(_ADAPTIVE_SEED + seed + s for s in range(eot_samples))
        adaptive = defense(model, _adaptive_test_time(model, x, y, defense, attack=attack, seeds=seeds), y, seed)
    images["adaptive"] = _keep_fooling(model, y, images["defended_attacked"], adaptive)
    return images


def _keep_fooling(model: nn.Module, y: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """Per image, ``first`` where the model misclassifies it, else ``second``."""
    with torch.no_grad():
        fooled = model(first).argmax(1) != y
    return torch.where(fooled.view(-1, *[1] * (first.dim() - 1)), first, second)


def evaluate_defense(
    model: nn.Module,
    loader: DataLoader,
    *,
    threat: Threat = "preemptive",
    norm: Norm = "linf",
    eps: float,
    alpha: float,
    steps: int,
    budget: float | None,
    def_steps: int = 79,
    lr: float = 0.1,
    label: LabelMode = "predicted",
    eot_samples: int = 1,
    restarts: int = 5,
    seed: int = 0,
) -> dict[str, float | bool]:
    """Accuracy in every row of :func:`threat_images` over ``loader``, and ``worst_case``,
    the lowest of :data:`ATTACKED_ROWS`.

    Also returns ``oracle`` (True when the defense read the true labels), ``budget``
    (``inf`` when unbounded) and ``examples`` (how many images were evaluated).
    """
    defense = Defense(eps, alpha, steps, budget, norm, def_steps, lr, label)
    device = model_device(model)
    correct = dict.fromkeys(ROWS[:-1], 0)
    total = 0
    with frozen_eval(model):
        for x, y in progress(loader, f"evaluate defense ({threat}, {label} labels)", leave=True):
            labels = torch.as_tensor(y).to(device)
            images = threat_images(model, x, labels, defense, threat=threat, eot_samples=eot_samples,
                                   restarts=restarts, seed=seed)
            with torch.no_grad():
                for row, batch in images.items():
                    correct[row] += (model(batch).argmax(1) == labels).sum().item()
            total += len(labels)
    if total == 0:
        raise InvalidArgument("the loader yielded no images: pass a loader over a non-empty dataset")
    result: dict[str, float | bool] = {row: n / total for row, n in correct.items()}
    result["worst_case"] = min(result[row] for row in ATTACKED_ROWS)
    result.update(oracle=defense.oracle, budget=defense.bound, examples=total)
    return result


def defense_table(
    model: nn.Module,
    loader: DataLoader,
    *,
    threats: Sequence[Threat] = ("preemptive", "test-time"),
    labels: Sequence[LabelMode] = ("predicted", "oracle"),
    **settings: Any,
) -> dict[str, dict[str, float | bool]]:
    """:func:`evaluate_defense` for every threat model and label mode, keyed ``"<threat>/<label>"``;
    ``settings`` are its other keyword arguments. Print it with :func:`format_results`."""
    return {f"{threat}/{label}": evaluate_defense(model, loader, threat=threat, label=label, **settings)
            for threat in threats for label in labels}


def format_results(results: dict[str, dict[str, float | bool]]) -> str:
    """The evaluation table: one row per metric, one column per named result.

    Columns of oracle results are headed ``[ORACLE]``, with a note under the table.
    """
    names = {key: f"{key} [ORACLE]" if res.get("oracle") else key for key, res in results.items()}
    rows = [{"accuracy": row, **{names[k]: float(res[row]) for k, res in results.items()}} for row in ROWS]
    table = format_table(rows)
    if any(res.get("oracle") for res in results.values()):
        table += "\n[ORACLE]: the defense used the true test labels, which a deployed system does not have."
    unbounded = [key for key, res in results.items() if math.isinf(float(res.get("budget", 0)))]
    if unbounded:
        table += f"\nunbounded defense (budget = inf, as asked) in: {', '.join(unbounded)}"
    return table


def defend_loader(model: nn.Module, loader: DataLoader, defense: Defense, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Defend every image of ``loader``; return ``(defended images, true labels)`` on the CPU."""
    xs, ys = [], []
    for x, y in progress(loader, f"defend ({defense.label} labels)", leave=True):
        xs.append(defense(model, x, y, seed).cpu())
        ys.append(torch.as_tensor(y).cpu())
    return torch.cat(xs), torch.cat(ys)


def save_defended(path: str | Path, images: Tensor, labels: Tensor, defense: Defense) -> Path:
    """Write defended images (float32), their true labels and the defense's settings to ``.npz``, atomically."""
    settings = {k: np.asarray(v if v is not None else math.inf) for k, v in asdict(defense).items()}
    return save_npz(path, images=images.cpu().numpy().astype(np.float32), labels=labels.cpu().numpy(), **settings)


def load_defended(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read a file written by :func:`save_defended`: ``(images, labels)``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no defended data at {path}: write it with python -m robustness defend --save-data")
    with np.load(path, allow_pickle=False) as data:
        return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])


def defend_splits(
    model: nn.Module,
    defense: Defense,
    arch: str,
    dataset: str,
    *,
    subset: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    data_root: str | Path = "Dataset",
) -> dict[Split, Path]:
    """Defend the train and test (``valid``) split, or a seeded ``subset`` of each, and save them
    under ``Defensive_<norm>/`` (:func:`paths.defense_data_path`); return the files written."""
    written: dict[Split, Path] = {}
    for split in get_args(Split):
        loader = make_loader(load_dataset(dataset, split == "train", data_root), batch_size, subset=subset, seed=seed)
        images, labels = defend_loader(model, loader, defense, seed)
        path = paths.defense_data_path(arch, dataset, defense.norm, split, defense.label, models_root)
        written[split] = save_defended(path, images, labels, defense)
    return written


def tsne_figure(model: nn.Module, x: Tensor, y: Tensor, defense: Defense, seed: int = 0) -> Figure:
    """t-SNE maps of clean, adversarial, defended and defended-then-attacked images (preemptive threat)."""
    images = threat_images(model, x, y, defense, threat="preemptive", seed=seed)
    labels = torch.as_tensor(y).cpu()
    sets = {name.replace("_", " "): (images[name].cpu(), labels)
            for name in ("clean", "attacked", "defended_clean", "defended_attacked")}
    oracle = " [ORACLE: true labels]" if defense.oracle else ""
    budget = "unbounded" if math.isinf(defense.bound) else f"{defense.bound:g}"
    title = (f"PGD-{defense.norm} eps {defense.eps:g}, defense budget {budget}, "
             f"{defense.label} labels{oracle}")
    return plot_tsne(sets, title, seed)


def load_or_train(
    arch: str = "mnist_cnn",
    dataset: str = "mnist5k",
    *,
    epochs: int = 10,
    seed: int = 0,
    device: str = "auto",
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    data_root: str | Path = "Dataset",
) -> nn.Module:
    """The original project's model: ``arch`` trained on ``dataset`` with Adam (lr 5e-4, batch 100)
    into the SPEC 2 tree (``Init_1``), or reused from there when already trained; in eval mode."""
    config = TrainConfig(arch=arch, dataset=dataset, epochs=epochs, lr=5e-4, batch_size=100, seed=seed,
                         device=device, models_root=str(models_root), data_root=str(data_root))
    train(config, resume=True)
    path = paths.checkpoint_path(arch, dataset, 1, epochs, models_root)
    model, _ = load_checkpoint(path, arch, dataset, map_location=pick_device(device))
    return model
