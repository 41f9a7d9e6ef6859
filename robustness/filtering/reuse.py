"""Local sweeps that reuse what filtering one layer leaves unchanged, and evaluate several thresholds per pass.

Filtering one layer changes nothing computed before it. :func:`split_model` cuts a model (traced by
``torch.fx``) just before the filtered layer into a *prefix*, images -> the values the rest of the network
needs (the layer's input and, inside a residual block, the block's input that the shortcut carries), and a
*suffix*, those values -> logits. Then:

- FGSM (:func:`fgsm_points`): per batch of evaluation images the prefix runs once and its autograd graph is
  kept; at every threshold only the suffix runs forward and backward, and the input gradient comes from a
  backward pass through the kept prefix graph. The adversarial images differ per threshold, so their forward
  pass is the whole network.
- BatchNorm re-estimation (:meth:`Split.capture`, :meth:`Split.recalibrate`): the calibration images' prefix
  values are computed once per layer, which re-estimates the prefix's BatchNorm layers (they are the unfiltered
  reference's at every threshold); each threshold re-estimates only the suffix's BatchNorm layers, on those values.
- ``per_pass = K > 1`` evaluates K thresholds in one pass: the suffix takes K copies of a batch along the batch
  dimension, the filtered layer applies the k-th threshold's weights to the k-th copy and each BatchNorm layer of
  the suffix the k-th threshold's statistics; the rest runs once on the K-fold batch (large batches fill a GPU).

Every operation is the one a full forward or backward pass runs, on the same values, so the numbers are those of
a full pass per threshold; with ``K > 1`` up to the rounding of kernels whose summation order depends on the batch
size. A cut is used only where it is exact (:func:`split_model` says why not otherwise).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules import module as torch_module
from torch.nn.modules.batchnorm import _BatchNorm

from ..attacks import GEOMETRIES, check_batch, check_labels
from ..finite import count_nonfinite, logits_error
from ..runtime import progress
from .batchnorm import BN_BATCH, Statistics, bn_batches, estimating, statistics
from .results import Evaluation

_IN_PLACE_OPERATORS = {
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod, operator.ipow,
    operator.iand, operator.ior, operator.ixor, operator.ilshift, operator.irshift, operator.imatmul,
}
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def _mean(correct: np.ndarray) -> float:
    """The accuracy of per-image outcomes: exactly ``correct.mean()`` (0 for no images)."""
    return float(correct.mean()) if len(correct) else 0.0


class Tally:
    """What one point of a sweep records, accumulated batch by batch: per-image outcomes and loss sums, and how
    many images got logits that are not finite (counted on the device; :meth:`evaluation` raises for them,
    probing ``model`` on ``x`` for the layer)."""

    def __init__(self, device: torch.device, model: nn.Module, x: Tensor) -> None:
        self.model, self.x = model, x
        self.losses = torch.zeros(3, dtype=torch.float64, device=device)  # clean, adversarial loss sums; non-finite
        self.clean_ok: list[Tensor] = []
        self.adv_ok: list[Tensor] = []

    def add(self, clean_logits: Tensor, adv_logits: Tensor, y: Tensor) -> None:
        """Record one batch from its clean and adversarial logits."""
        with torch.no_grad():
            self.clean_ok.append(clean_logits.argmax(1) == y)
            self.adv_ok.append(adv_logits.argmax(1) == y)
            self.losses += torch.stack([
                F.cross_entropy(clean_logits, y, reduction="sum"), F.cross_entropy(adv_logits, y, reduction="sum"),
                count_nonfinite(torch.cat([clean_logits, adv_logits], 1)),
            ]).double()

    def evaluation(self, n: int) -> Evaluation:
        """The point over all ``n`` images (waits for the device once)."""
        ok = self.clean_ok
        both = torch.stack([torch.cat(ok), torch.cat(self.adv_ok)]).cpu().numpy() if ok else np.zeros((2, 0), bool)
        clean_loss, adv_loss, nonfinite = (self.losses / torch.tensor([max(n, 1), max(n, 1), 1.0],
                                                                      device=self.losses.device)).tolist()
        if nonfinite:
            raise logits_error(self.model, self.x, int(nonfinite), n)
        return Evaluation(_mean(both[0]), _mean(both[1]), clean_loss, adv_loss, both[0], both[1])


def _repeat(t: Tensor, k: int) -> Tensor:
    """``k`` copies of ``t`` along the batch dimension (``t`` itself for one)."""
    return t if k == 1 else torch.cat([t] * k)


def _in_parts(fn: Callable[..., Tensor], x: Tensor, per_part: list) -> Tensor:
    """``fn(part_k, *per_part[k])`` on the ``K = len(per_part)`` equal parts of the batch ``x``, concatenated."""
    if len(per_part) == 1:
        return fn(x, *per_part[0])
    return torch.cat([fn(part, *args) for part, args in zip(x.chunk(len(per_part)), per_part, strict=True)])


class _LayerPerPart(nn.Module):
    """The filtered layer applying ``weights[k]`` to the k-th of ``len(weights)`` parts of its batch."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = (layer,)  # a tuple: not registered as a submodule
        self.weights: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        layer = self.layer[0]
        if isinstance(layer, nn.Conv2d):
            return _in_parts(lambda part, w: layer._conv_forward(part, w, layer.bias), x, [(w,) for w in self.weights])
        return _in_parts(lambda part, w: F.linear(part, w, layer.bias), x, [(w,) for w in self.weights])


class _BatchNormPerPart(nn.Module):
    """A BatchNorm layer in eval mode normalising the k-th part of its batch with ``stats[k]`` (the layer's own
    running statistics for every part when ``stats`` is ``None``)."""

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        self.bn = (bn,)
        self.stats: list[tuple[Tensor, Tensor]] | None = None

    def forward(self, x: Tensor) -> Tensor:
        bn = self.bn[0]
        if self.stats is None:
            return bn(x)
        return _in_parts(lambda part, mean, var: F.batch_norm(part, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps),
                         x, self.stats)


class Split:
    """A model cut just before one of its layers (built by :func:`split_model`)."""

    def __init__(self, model: nn.Module, layer: nn.Module, prefix: fx.GraphModule, suffix: fx.GraphModule,
                 per_part: fx.GraphModule, bn: tuple[list[_BatchNorm], list[_BatchNorm]],
                 parts: tuple[_LayerPerPart, list[_BatchNormPerPart]]) -> None:
        self.model, self.layer = model, layer
        self.prefix_passes = 0  # batches whose prefix values served every threshold
        self._prefix, self._suffix, self._per_part = prefix, suffix, per_part
        self.prefix_bn, self.suffix_bn = bn
        self._layer_parts, self._bn_parts = parts

    def prefix(self, x: Tensor) -> list[Tensor]:
        """The values the suffix needs, for images ``x`` (the root's forward pre-hooks run first, as in a call)."""
        args = (x,)
        for hook in self.model._forward_pre_hooks.values():
            out = hook(self.model, args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
        return list(self._prefix(*args))

    def outputs(self, values: list[Tensor], weights: list[Tensor], stats: list[Statistics] | None) -> Tensor:
        """The logits of the suffix on ``values`` that hold ``K = len(weights)`` parts: the filtered layer applies
        ``weights[k]`` to part ``k`` and the suffix's BatchNorm layers ``stats[k]`` (their own when ``None``)."""
        self._layer_parts.weights = weights
        for i, part in enumerate(self._bn_parts):
            part.stats = None if stats is None else [s[i] for s in stats]
        return self._per_part(*values)

    def capture(self, images: Tensor) -> list[list[Tensor]]:
        """The prefix values of the BatchNorm images ``images``, batch by batch as
        :func:`~robustness.filtering.batchnorm.recalibrate_batchnorm` takes them; re-estimates the prefix's BatchNorm
        layers on the way, exactly as a re-estimation of the whole model would."""
        batches = bn_batches(images, BN_BATCH)
        self.prefix_passes += len(batches)
        with estimating(self.model, self.prefix_bn):
            return [self.prefix(batch) for batch in batches]

    def recalibrate(self, cache: list[list[Tensor]]) -> None:
        """Re-estimate the suffix's BatchNorm layers for the current weights, on the :meth:`capture`\\ d values."""
        with estimating(self.model, self.suffix_bn):
            for values in cache:
                self._suffix(*values)

    def statistics(self) -> Statistics:
        """A copy of the suffix's BatchNorm running means and variances."""
        return statistics(self.suffix_bn)


def trace(model: nn.Module) -> fx.GraphModule | str:
    """``model`` traced by ``torch.fx`` (its root's hooks are not part of the trace), or why it cannot be."""
    hooked = [name or "the model" for name, m in model.named_modules() if m._forward_hooks or m._backward_hooks
              or m._backward_pre_hooks or m._forward_hooks_with_kwargs or (name and m._forward_pre_hooks)]
    if hooked or model._forward_pre_hooks_with_kwargs or any(getattr(torch_module, h) for h in _GLOBAL_HOOKS):
        return f"modules have hooks ({', '.join(hooked) or 'global or keyword pre-hooks'})"
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # noqa: BLE001 (whatever stops the tracer, the full pass is the answer)
        return f"torch.fx cannot trace it ({type(err).__name__}: {err})"


def _in_place(traced: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` may change its first argument in place."""
    if node.kwargs.get("inplace"):
        return True
    if node.op == "call_module":
        return bool(getattr(traced.get_submodule(node.target), "inplace", False))
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    return node.op == "call_function" and node.target in _IN_PLACE_OPERATORS


def _copy(nodes: list[fx.Node], inputs: list[fx.Node], rename: dict[str, str] | None = None) -> fx.Graph:
    """A graph of ``nodes`` with ``inputs`` as placeholders (module targets renamed by ``rename``)."""
    graph = fx.Graph()
    env = {n: graph.placeholder(n.name) for n in inputs}
    for n in nodes:
        env[n] = graph.node_copy(n, env.__getitem__)
        if rename and env[n].op == "call_module" and env[n].target in rename:
            env[n].target = rename[env[n].target]
    return graph


def split_model(model: nn.Module, layer: str, traced: fx.GraphModule | str | None = None) -> Split | str:
    """``model`` cut just before its module named ``layer``, or why the cut would not be exact.

    ``traced`` is :func:`trace`'s answer, when already known. The cut is exact where the model traces, no
    module but the root has hooks and the root only forward pre-hooks (the input normalisation), ``layer``
    runs once per forward pass, no BatchNorm layer runs both before and after it, nothing after it changes a value
    from before it in place, and every BatchNorm layer keeps running statistics. ResNet-18/50 (both stems),
    SqueezeNet, ShuffleNet and ``mnist_cnn`` of the registry cut exactly at every filterable layer.
    """
    traced = trace(model) if traced is None else traced
    if isinstance(traced, str):
        return traced
    nodes = list(traced.graph.nodes)
    at = [i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == layer]
    if len(at) != 1:
        return f"{layer} runs {len(at)} times in a forward pass"
    before, after = nodes[:at[0]], nodes[at[0]:]
    later = set(after)
    live = [n for n in before if any(user in later for user in n.users)]
    modules = [[n.target for n in part if n.op == "call_module"] for part in (before, after)]
    shared = [t for t in set(modules[0]) & set(modules[1]) if isinstance(traced.get_submodule(t), _BatchNorm)]
    if shared:
        return f"BatchNorm layers run both before and after {layer}: {', '.join(sorted(shared))}"
    changed = [n.name for n in after if n.args and n.args[0] in live and _in_place(traced, n)]
    if changed:
        return f"{', '.join(changed)} change(s) a value computed before {layer} in place"
    bn = [[traced.get_submodule(t) for t in dict.fromkeys(part) if isinstance(traced.get_submodule(t), _BatchNorm)]
          for part in modules]
    if not all(m.track_running_stats for m in bn[0] + bn[1]):
        return "a BatchNorm layer keeps no running statistics (it normalises with its batch's statistics)"
    return _assemble(model, traced, layer, before, after, live, bn)


def _assemble(model: nn.Module, traced: fx.GraphModule, layer: str, before: list[fx.Node], after: list[fx.Node],
              live: list[fx.Node], bn: list[list[_BatchNorm]]) -> Split:
    """The :class:`Split` of ``traced`` into ``before`` and ``after``, whose ``live`` values cross the cut."""
    prefix = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in before:
        env[n] = prefix.node_copy(n, env.__getitem__)
    prefix.output(tuple(env[n] for n in live))
    suffix_bn_names = [t for t in dict.fromkeys(n.target for n in after if n.op == "call_module")
                       if isinstance(traced.get_submodule(t), _BatchNorm)]
    rename = {layer: "filtered_per_part"} | {t: f"batchnorm_per_part_{i}" for i, t in enumerate(suffix_bn_names)}
    per_part_graph = _copy(after, live, rename)
    layer_parts = _LayerPerPart(traced.get_submodule(layer))
    bn_parts = [_BatchNormPerPart(traced.get_submodule(t)) for t in suffix_bn_names]
    replaced = {"filtered_per_part": layer_parts} | {f"batchnorm_per_part_{i}": m for i, m in enumerate(bn_parts)}
    root = {n.target: replaced.get(n.target) or operator.attrgetter(n.target)(traced)
            for n in per_part_graph.nodes if n.op in ("call_module", "get_attr")}
    return Split(model, traced.get_submodule(layer), fx.GraphModule(traced, prefix),
                 fx.GraphModule(traced, _copy(after, live)), fx.GraphModule(root, per_part_graph),
                 (bn[0], bn[1]), (layer_parts, bn_parts))


def fgsm_points(
    split: Split, original: Tensor, masks: Sequence[Tensor], stats: list[Statistics] | None, x: Tensor, y: Tensor,
    eps: float, batch_size: int, per_pass: int = 1, desc: str = "",
) -> list[Evaluation]:
    """The FGSM :class:`Evaluation` of the model with its filtered layer's weights ``original`` less each of
    ``masks``, and (when given) its suffix's BatchNorm statistics ``stats[i]``, on ``(x, y)``: the numbers of
    :func:`robustness.filtering.sweeps.evaluate` at each point, with the prefix computed once per batch, and
    ``per_pass`` points per pass."""
    tallies = [Tally(x.device, split.model, x) for _ in masks]
    groups = [range(i, min(i + per_pass, len(masks))) for i in range(0, len(masks), per_pass)]
    batches = list(zip(x.split(batch_size), y.split(batch_size), strict=True))
    for x_batch, y_batch in progress(batches, desc):
        xb, yb = check_batch(split.model, x_batch, y_batch)
        x_in = xb.detach().requires_grad_(True)
        with torch.enable_grad():
            live = split.prefix(x_in)
        split.prefix_passes += 1
        tracked = [i for i, h in enumerate(live) if h.requires_grad]
        for group in groups:
            k = len(group)
            weights = [original.masked_fill(masks[c], 0) for c in group]
            group_stats = None if stats is None else [stats[c] for c in group]
            leaves = [_repeat(h.detach(), k).requires_grad_(True) for h in live]
            with torch.enable_grad():
                logits = check_labels(split.outputs(leaves, weights, group_stats), yb)
                grads = torch.autograd.grad(F.cross_entropy(logits, _repeat(yb, k), reduction="sum"), leaves)
            images = []
            for j in range(k):
                (grad,) = torch.autograd.grad([live[i] for i in tracked], x_in,
                                              [grads[i].chunk(k)[j] for i in tracked], retain_graph=True)
                images.append(xb.clone() if eps == 0 else GEOMETRIES["linf"].step(xb, grad, eps).clamp(0, 1))
            with torch.no_grad():
                adv_logits = split.outputs(split.prefix(_repeat_list(images)), weights, group_stats)
            for j, c in enumerate(group):
                tallies[c].add(logits.detach().chunk(k)[j], adv_logits.chunk(k)[j], yb)
    return [t.evaluation(len(y)) for t in tallies]


def _repeat_list(images: list[Tensor]) -> Tensor:
    """The images of several points as one batch."""
    return images[0] if len(images) == 1 else torch.cat(images)
