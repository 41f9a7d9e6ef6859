"""FGSM, PGD and APGD: agreement with torchattacks, the sanity properties, state and argument handling."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

from robustness.attacks import APGD, FGSM, GEOMETRIES, PGD, fgsm, make_attack, pgd
from robustness.errors import InvalidArgument
from robustness.models import build_model

BATCH = N = 200  # images per test (the `batch` fixture reads BATCH): enough for stable accuracies, cheap on mnist_cnn


def wrong(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Which images the model misclassifies."""
    with torch.no_grad():
        return model(x).argmax(1) != y


def acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return 1 - wrong(model, x, y).float().mean().item()


# ---------------------------------------------------------------- against torchattacks


def test_fgsm_images_identical_to_torchattacks(trained_cnn, batch):
    x, y = batch
    ours = fgsm(trained_cnn, x, y, eps=0.1)
    theirs = torchattacks.FGSM(trained_cnn, eps=0.1)(x, y)
    assert torch.equal(ours, theirs)
    assert acc(trained_cnn, ours, y) < acc(trained_cnn, x, y) - 0.05  # the attack does something


PEERS = {"linf": torchattacks.PGD, "l2": torchattacks.PGDL2}


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps", "alpha"), [("linf", 0.1, 0.02), ("l2", 1.0, 0.25)])
def test_pgd_without_random_start_matches_torchattacks(trained_cnn, batch, norm, eps, alpha):
    """Without a random start both follow the same trajectory; ours stops at the first misclassified
    iterate, theirs returns the last. So an image is fooled by ours exactly when one of torchattacks'
    iterates 0..K fools it, and the images ours never fools are torchattacks' final images: bit for bit
    in L∞; in L2 up to torchattacks adding 1e-10 to the norm of its batch-mean gradient, which shortens
    its steps on confidently classified images (gradient norms ~1e-8) by up to a few per cent."""
    x, y = batch
    steps = 5
    ours = pgd(trained_cnn, x, y, eps, alpha, steps, norm=norm, random_start=False)
    peer = PEERS[norm]
    theirs = [peer(trained_cnn, eps=eps, alpha=alpha, steps=k, random_start=False)(x, y) for k in range(steps + 1)]
    ever_fooled = torch.stack([wrong(trained_cnn, t, y) for t in theirs]).any(0)
    ours_fooled = wrong(trained_cnn, ours, y)
    assert torch.equal(ours_fooled, ever_fooled)
    assert acc(trained_cnn, ours, y) <= acc(trained_cnn, theirs[-1], y)
    assert 0 < ours_fooled.sum() < N  # the comparison is not vacuous
    kept = ~ours_fooled
    torch.testing.assert_close(ours[kept], theirs[-1][kept], rtol=0, atol=0 if norm == "linf" else 1e-2)


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_pgd_with_random_start_no_weaker_than_torchattacks(trained_cnn, batch, norm, eps):
    x, y = batch
    steps, alpha = 10, 2.5 * eps / 10
    ours = pgd(trained_cnn, x, y, eps, alpha, steps, norm=norm)
    torch.manual_seed(0)
    theirs = PEERS[norm](trained_cnn, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    assert acc(trained_cnn, ours, y) <= acc(trained_cnn, theirs, y)


@pytest.mark.slow
def test_apgd_ce_images_identical_to_torchattacks(trained_cnn, batch):
    """We wrap torchattacks' APGD: with one loss and the same seed the images are bit for bit theirs."""
    x, y = batch[0][:100], batch[1][:100]
    ours = make_attack("apgd-ce", 0.1, steps=5, seed=3)(trained_cnn, x, y)
    theirs = torchattacks.APGD(trained_cnn, eps=0.1, steps=5, loss="ce", seed=3)(x, y)
    assert torch.equal(ours, theirs)
    assert acc(trained_cnn, ours, y) < acc(trained_cnn, x, y) - 0.05


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_apgd_no_weaker_than_pgd_at_equal_eps(trained_cnn, batch, norm, eps):
    """Same eps and iteration count: APGD's adaptive step (and its second loss) finds at least what PGD with
    Madry's step finds. Both are heuristics, so PGD may fool an image APGD misses: the margin is one image
    (1/n), and in practice APGD fools more."""
    x, y = batch[0][:100], batch[1][:100]
    steps = 10
    apgd_acc = acc(trained_cnn, make_attack("apgd", eps, steps=steps, norm=norm)(trained_cnn, x, y), y)
    pgd_acc = acc(trained_cnn, make_attack("pgd", eps, steps=steps, norm=norm)(trained_cnn, x, y), y)
    assert apgd_acc <= pgd_acc + 1 / len(y)
    assert apgd_acc < acc(trained_cnn, x, y) - 0.05


@pytest.mark.slow
def test_apgd_is_the_per_example_worst_case_of_its_losses(trained_cnn, batch):
    x, y = batch[0][:100], batch[1][:100]
    both = wrong(trained_cnn, APGD(0.1, steps=5)(trained_cnn, x, y), y)
    ce = wrong(trained_cnn, APGD(0.1, steps=5, losses=("ce",))(trained_cnn, x, y), y)
    dlr_alone = wrong(trained_cnn, APGD(0.1, steps=5, losses=("dlr",))(trained_cnn, x, y), y)
    assert torch.all(both >= ce)  # CE runs first on the whole batch, so whatever it fools stays fooled
    assert both.sum() >= max(ce.sum(), dlr_alone.sum())
    assert both.sum() <= (ce | dlr_alone).sum() + 2  # DLR on the rest sees a smaller batch: other random starts


@pytest.mark.slow
def test_apgd_is_deterministic_and_keeps_the_callers_random_state(trained_cnn, batch):
    x, y = batch[0][:50], batch[1][:50]
    attack = APGD(0.1, steps=3, seed=7)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = attack(trained_cnn, x, y)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, attack(trained_cnn, x, y))
    assert not torch.equal(first, APGD(0.1, steps=3, seed=8)(trained_cnn, x, y))


def test_apgd_dlr_needs_three_classes(mnist5k_test):
    x = mnist5k_test[0][:4]
    two_classes = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    with pytest.raises(InvalidArgument, match="3 classes|three largest logits"):
        APGD(0.1, steps=2)(two_classes, x, torch.zeros(4, dtype=torch.long))
    x_adv = make_attack("apgd-ce", 0.1, steps=2)(two_classes, x, torch.zeros(4, dtype=torch.long))  # CE is fine
    assert x_adv.shape == x.shape


# ---------------------------------------------------------------- sanity properties


@pytest.mark.parametrize("attack", [FGSM(0.0), PGD(0.0, 0.01, 3), PGD(0.0, 0.1, 3, "l2", restarts=2), APGD(0.0)],
                         ids=lambda a: a.tag)
def test_eps_zero_returns_x_exactly(trained_cnn, batch, attack):
    x, y = batch
    assert torch.equal(attack(trained_cnn, x, y), x)


def test_pgd_no_weaker_than_fgsm_and_large_eps_reaches_chance(trained_cnn, batch):
    x, y = batch
    fgsm_acc = acc(trained_cnn, fgsm(trained_cnn, x, y, 0.1), y)
    pgd_acc = acc(trained_cnn, pgd(trained_cnn, x, y, 0.1, 0.04, 5), y)
    assert pgd_acc < fgsm_acc
    assert acc(trained_cnn, pgd(trained_cnn, x, y, 1.0, 0.5, 5), y) <= 0.1


@pytest.mark.parametrize("attack", [FGSM(0.15), PGD(0.15, 0.05, 5), PGD(1.5, 0.5, 5, "l2", restarts=2),
                                    APGD(0.15, steps=5), APGD(1.5, "l2", steps=5)], ids=lambda a: a.tag)
def test_adversarial_images_lie_in_the_ball_and_the_unit_box(trained_cnn, batch, attack):
    x, y = batch[0][:50], batch[1][:50]  # 50 images: fast tier
    x_adv = attack(trained_cnn, x, y)
    sizes = GEOMETRIES[attack.norm].size(x_adv - x)
    assert sizes.max() <= attack.eps + 1e-5
    assert sizes.max() >= 0.9 * attack.eps  # the budget is used, not trivially satisfied
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if isinstance(attack, APGD):  # it returns x where it fails, an adversarial image where it succeeds
        fooled = wrong(trained_cnn, x_adv, y) & ~wrong(trained_cnn, x, y)
        assert 0 < fooled.sum() < len(x) and torch.equal(x_adv[~fooled], x[~fooled])


@pytest.mark.slow
def test_restarts_keep_the_worst_case_per_example(trained_cnn, batch):
    """Restart 1 of 3 draws the same start as the single run (same seed), so every image the single
    run fools stays fooled, and restarts can only add."""
    x, y = batch
    once = wrong(trained_cnn, pgd(trained_cnn, x, y, 0.15, 0.15, 1), y)  # one step: the start matters
    thrice = wrong(trained_cnn, pgd(trained_cnn, x, y, 0.15, 0.15, 1, restarts=3), y)
    assert torch.all(thrice >= once)
    assert thrice.sum() > once.sum()


@pytest.mark.slow
def test_images_misclassified_at_the_start_keep_the_clean_image(trained_cnn, batch):
    x, y = batch
    clean_wrong = wrong(trained_cnn, x, y)
    assert clean_wrong.any()
    x_adv = pgd(trained_cnn, x, y, 0.2, 0.05, 5)
    assert torch.equal(x_adv[clean_wrong], x[clean_wrong])


@pytest.mark.slow
@pytest.mark.parametrize("attack", [FGSM(0.1), PGD(0.1, 0.02, 3), PGD(0.1, 0.02, 3, random_start=False),
                                    APGD(0.1, steps=3)], ids=lambda a: a.tag)
def test_clean_logits_come_with_the_attack(trained_cnn, batch, attack):
    x, y = batch
    x_adv, logits = attack.with_clean_logits(trained_cnn, x, y)
    with torch.no_grad():
        torch.testing.assert_close(logits, trained_cnn(x))
    assert torch.equal(x_adv, attack(trained_cnn, x, y))


# ---------------------------------------------------------------- model state and arguments


def _state(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("attack", [FGSM(0.1), PGD(0.1, 0.02, 3, restarts=2), APGD(0.1, steps=2)],
                         ids=lambda a: a.tag)
def test_model_state_left_as_found_also_after_an_error(mnist5k_test, attack):
    """On a ResNet-18 (BatchNorm: train mode would change the attack and the running statistics)."""
    model = build_model("resnet18", "mnist5k")
    x, y = mnist5k_test[0][:8], mnist5k_test[1][:8]
    model.eval()
    model.layer1.train()  # a mixed state, so that restoring it is not the same as calling .train() or .eval()
    model.fc.weight.requires_grad_(False)
    before = _state(model)
    stats = model.layer1[0].bn1.running_mean.clone()
    attack(model, x, y)
    assert _state(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.layer1[0].bn1.running_mean, stats)  # ran in eval mode

    def fail(*_: object) -> None:
        raise RuntimeError("boom")

    model.layer2.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        attack(model, x, y)
    assert _state(model) == before
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("attack", [FGSM(0.1), APGD(0.1, steps=3)], ids=lambda a: a.tag)
def test_attack_works_under_no_grad(trained_cnn, batch, attack):
    x, y = batch
    with torch.no_grad():
        x_adv = attack(trained_cnn, x, y)
    assert not torch.equal(x_adv, x)


_X = torch.rand(4, 1, 28, 28)
_Y = torch.zeros(4, dtype=torch.long)
_LINEAR = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


@pytest.mark.parametrize("call", [
    lambda: fgsm(_LINEAR, _X, _Y, -0.1),
    lambda: fgsm(_LINEAR, _X, _Y, float("nan")),
    lambda: pgd(_LINEAR, _X, _Y, 0.1, -0.01, 5),
    lambda: pgd(_LINEAR, _X, _Y, 0.1, 0.01, 0),
    lambda: pgd(_LINEAR, _X, _Y, 0.1, 0.01, -1),
    lambda: pgd(_LINEAR, _X, _Y, 0.1, 0.01, 5, restarts=0),
    lambda: pgd(_LINEAR, _X, _Y, 0.1, 0.01, 5, norm="l1"),
    lambda: pgd(_LINEAR, _X, _Y, 0.1, 0.01, 2.5),
    lambda: fgsm(_LINEAR, _X[0], _Y, 0.1),
    lambda: fgsm(_LINEAR, _X * 255, _Y, 0.1),
    lambda: fgsm(_LINEAR, _X - 0.5, _Y, 0.1),
    lambda: fgsm(_LINEAR, torch.full_like(_X, float("nan")), _Y, 0.1),
    lambda: fgsm(_LINEAR, _X, _Y[:3], 0.1),
    lambda: fgsm(_LINEAR, _X, _Y[:, None], 0.1),
    lambda: fgsm(_LINEAR, _X, _Y.float(), 0.1),
    lambda: fgsm(_LINEAR, _X, _Y - 1, 0.1),
    lambda: pgd(_LINEAR, _X, _Y + 10, 0.1, 0.01, 2),
    lambda: make_attack("cw", 0.1),
    lambda: make_attack("fgsm", 0.1, norm="l2"),
    lambda: make_attack("pgd", -0.1),
    lambda: make_attack("apgd", -0.1),
    lambda: make_attack("apgd", 0.1, alpha=0.01),
    lambda: make_attack("apgd", 0.1, random_start=False),
    lambda: make_attack("apgd", 0.1, steps=0),
    lambda: make_attack("apgd", 0.1, norm="l1"),
    lambda: APGD(0.1, losses=("ce", "ce")),
    lambda: APGD(0.1, losses=("cw",)),
    lambda: APGD(0.1, losses=()),
    lambda: APGD(0.1, restarts=0),
    lambda: APGD(0.1)(_LINEAR, _X * 255, _Y),
    lambda: APGD(0.1)(_LINEAR, _X, _Y + 10),
], ids=["eps<0", "eps nan", "alpha<0", "steps=0", "steps<0", "restarts=0", "norm", "steps float", "3-D x",
        "x in 0..255", "x normalised", "x nan", "y short", "y 2-D", "y float", "y<0", "y>=classes",
        "attack name", "fgsm l2", "pgd eps<0", "apgd eps<0", "apgd alpha", "apgd no random start", "apgd steps=0",
        "apgd norm", "apgd loss twice", "apgd loss name", "apgd no loss", "apgd restarts=0", "apgd x in 0..255",
        "apgd y>=classes"])
def test_bad_arguments_raise_invalid_argument(call):
    with pytest.raises(InvalidArgument):
        call()


def test_tags_name_the_settings():
    assert FGSM(0.1).tag == "fgsm_eps0.1"
    assert PGD(0.3, 0.01, 10).tag == "pgd-linf_eps0.3_a0.01_k10"
    assert PGD(2, 0.25, 20, "l2", random_start=False, restarts=3).tag == "pgd-l2_eps2_a0.25_k20_norand_r3"
    assert make_attack("pgd", 0.3, steps=10) == make_attack("pgd", 0.3) == PGD(0.3, 0.075, 10)
    assert make_attack("apgd", 8 / 255) == APGD(8 / 255, "linf", 100, ("ce", "dlr"))
    assert APGD(0.03).tag == "apgd-linf_eps0.03_k100"
    assert make_attack("apgd-dlr", 1.5, steps=50, norm="l2", restarts=2, seed=1).tag == "apgd-dlr-l2_eps1.5_k50_r2_s1"
