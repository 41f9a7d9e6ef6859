"""Device choice and its messages, the per-step sync, and PGD's fixed-shape (masked) path."""

from __future__ import annotations

import pytest
import torch

from robustness import runtime
from robustness.attacks import PGD
from robustness.attacks import gradient as attacks
from robustness.errors import InvalidArgument
from robustness.runtime import choose_device, needs_fixed_shapes, pick_device, sync

HAS_XLA = runtime._xla_missing(asked=True) is None


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without CUDA, MPS, a TPU or PJRT_DEVICE, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_tpu_present", lambda: False)
    monkeypatch.delenv("PJRT_DEVICE", raising=False)


def test_auto_without_accelerators_picks_the_cpu_and_says_why(no_accelerator: None) -> None:
    choice = choose_device("auto")
    assert choice.device == torch.device("cpu")
    assert str(choice) == "device cpu: auto: no CUDA GPU, no XLA (no TPU and PJRT_DEVICE not set), no Apple MPS"


@pytest.mark.parametrize(("name", "message"), [
    ("cuda", "device 'cuda' asked for, but CUDA is not available"),
    ("cuda:1", "device 'cuda:1' asked for, but CUDA is not available"),
    ("mps", "device 'mps' asked for, but MPS is not available .*Apple-silicon"),
    ("gpu", "unknown device 'gpu': use auto .* xla, mps"),
])
def test_unavailable_devices_get_one_message_each(no_accelerator: None, name: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        choose_device(name)


@pytest.mark.skipif(HAS_XLA, reason="torch_xla is installed here")
@pytest.mark.parametrize("pjrt", [None, "CPU"])
def test_xla_without_torch_xla_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, pjrt: str | None) -> None:
    if pjrt:
        monkeypatch.setenv("PJRT_DEVICE", pjrt)
    else:
        monkeypatch.delenv("PJRT_DEVICE", raising=False)
    with pytest.raises(InvalidArgument, match=r"device 'xla' asked for, but XLA is not usable here \(torch_xla does "
                                              r"not import .*preinstalled with its own torch"):
        choose_device("xla")


@pytest.mark.skipif(HAS_XLA, reason="torch_xla is installed here")
def test_auto_with_pjrt_device_but_no_torch_xla_falls_back_and_says_so(
    no_accelerator: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PJRT_DEVICE", "CPU")
    choice = choose_device("auto")
    assert choice.device == torch.device("cpu") and "torch_xla does not import" in choice.reason


def test_pick_device_names_its_choice_once_per_process(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_announced", set())
    assert pick_device("cpu") == pick_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().err == "device cpu: named, not auto-detected\n"


def test_sync_and_shapes_on_the_cpu() -> None:
    sync(torch.device("cpu"))  # a no-op off XLA
    assert not needs_fixed_shapes(torch.device("cpu")) and needs_fixed_shapes(torch.device("xla"))


@pytest.mark.slow
@pytest.mark.parametrize("attack", [
    PGD(0.12, 0.04, 5, restarts=3), PGD(1.5, 0.3, 5, "l2", restarts=2), PGD(0.1, 0.02, 5, random_start=False),
], ids=lambda a: a.tag)
def test_masked_pgd_equals_the_shrinking_batch(trained_cnn, mnist5k_test, attack: PGD,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed-shape path XLA takes (fooled examples frozen by a mask) gives the very images and clean
    logits of the early-stop path that drops them from the batch."""
    x, y = mnist5k_test[0][:100], mnist5k_test[1][:100]
    shrinking = attack.with_clean_logits(trained_cnn, x, y)
    monkeypatch.setattr(attacks, "needs_fixed_shapes", lambda device: True)
    masked = attack.with_clean_logits(trained_cnn, x, y)
    with torch.no_grad():
        fooled = (trained_cnn(masked[0]).argmax(1) != y).sum().item()
    assert 10 < fooled < 90  # some examples stop early, others run every step
    assert torch.equal(masked[0], shrinking[0]) and torch.equal(masked[1], shrinking[1])
