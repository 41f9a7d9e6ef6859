"""Models from elsewhere: files written here in each library's own format and cache layout (no network)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from robustness import paths
from robustness.errors import CheckpointError, InvalidArgument
from robustness.models import build_model, load_checkpoint, load_model, sources
from robustness.training import TrainConfig, train

X = torch.rand(3, 1, 28, 28)


def _logits(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _installed(distribution: str) -> bool:
    """Whether pip installed ``distribution`` (a folder of the same name alone does not count)."""
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _normalised(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def test_the_registry_names_every_source() -> None:
    assert set(sources.SOURCES) == {"file", "torchvision", "timm", "robustbench"}


def test_this_packages_checkpoint_loads_with_its_source_recorded(tmp_path: Path) -> None:
    train(TrainConfig(arch="mnist_cnn", epochs=0, models_root=str(tmp_path), device="cpu"))
    path = paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 0, tmp_path)
    model, meta = load_model(path)
    assert (meta["source"], meta["kind"], meta["arch"], meta["dataset"], meta["epoch"]) == (
        str(path), "file", "mnist_cnn", "mnist5k", 0)
    assert torch.equal(_logits(model), _logits(load_checkpoint(path)[0]))
    with pytest.raises(CheckpointError, match="not a resnet18"):
        load_model(path, arch="resnet18")


def test_a_plain_state_dict_needs_arch_and_dataset_and_gets_the_datasets_normalisation(tmp_path: Path) -> None:
    """A DDP-style state_dict (``module.`` prefixes, under ``state_dict``) without normalisation buffers, as
    another training script writes it: the model must equal the original with MNIST's mean/std in front."""
    torch.manual_seed(0)
    original = build_model("mnist_cnn", "mnist5k")
    weights = {f"module.{k}": v for k, v in original.state_dict().items() if not k.startswith("normalize.")}
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": weights, "epoch": 7}, path)
    with pytest.raises(InvalidArgument, match="plain state_dict.*arch= and dataset="):
        load_model(path)
    model, meta = load_model(path, arch="mnist_cnn", dataset="mnist5k")
    assert torch.equal(_logits(model), _logits(original))
    assert (meta["kind"], meta["arch"], meta["num_classes"], meta["input_shape"]) == ("file", "mnist_cnn", 10,
                                                                                      (1, 28, 28))
    with pytest.raises(CheckpointError, match="does not fit a resnet18 for mnist5k: .*missing"):
        load_model(path, arch="resnet18", dataset="mnist5k")
    with pytest.raises(CheckpointError, match="does not fit a mnist_cnn for cifar10: .*of another shape"):
        load_model(path, arch="mnist_cnn", dataset="cifar10")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cut.pt is not a readable checkpoint"):
        load_model(tmp_path / "cut.pt", arch="mnist_cnn", dataset="mnist5k")
    with pytest.raises(CheckpointError, match="no checkpoint at nowhere:weights.pt"):
        load_model("nowhere:weights.pt")  # not a registered prefix: a path


def test_an_unavailable_device_is_named_before_anything_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidArgument, match="device 'cuda' asked for"):
        load_model("torchvision:resnet18:IMAGENET1K_V1", device="cuda")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, and no network: a download fails at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, *_: object, **__: object) -> None:
        raise urllib.error.URLError(f"no network for {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch"


def test_torchvision_weights_from_the_hub_cache_take_unit_range_images(torch_home: Path) -> None:
    weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    cached = torch_home / "hub" / "checkpoints" / Path(weights.url).name  # where torchvision looks first
    with pytest.raises(CheckpointError, match=f"could not get the weights from {weights.url}.*put the file at "
                                              f"{cached}"):
        load_model("torchvision:resnet18:IMAGENET1K_V1")
    torch.manual_seed(1)
    reference = tvm.resnet18().eval()
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), cached)
    model, meta = load_model("torchvision:resnet18:IMAGENET1K_V1")
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(_logits(model, x), _logits(reference, _normalised(x, meta["mean"], meta["std"])), atol=1e-5)
    assert meta == {"source": "torchvision:resnet18:IMAGENET1K_V1", "kind": "torchvision", "arch": "resnet18",
                    "dataset": "imagenet", "weights": "IMAGENET1K_V1", "num_classes": 1000,
                    "input_shape": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    cached.write_bytes(cached.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"{cached} is not a readable checkpoint"):
        load_model("torchvision:resnet18")  # DEFAULT is IMAGENET1K_V1, the same file


@pytest.mark.parametrize(("source", "message"), [
    ("torchvision:resnet19", "unknown torchvision classification model 'resnet19'"),
    ("torchvision:resnet18:IMAGENET9K", "no weights 'IMAGENET9K' for resnet18: use one of IMAGENET1K_V1"),
    ("robustbench:Standard:cifar10", "robustbench:NAME:DATASET:THREAT"),
])
def test_bad_sources_name_the_problem(source: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_model(source)


@pytest.mark.parametrize(("source", "module"), [("timm:resnet18", "timm"),
                                                ("robustbench:Standard:cifar10:Linf", "robustbench")])
def test_a_missing_optional_library_names_its_extra(source: str, module: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    with pytest.raises(InvalidArgument, match=rf'{module} is not installed.*"robustness-toolkit\[{module}\]"'):
        load_model(source)


_TIMM_OFFLINE = """
import sys, torch
from pathlib import Path
import safetensors.torch, timm
from robustness.models import load_model
name, repo = "test_efficientnet.r160_in1k", Path(sys.argv[1]) / "models--timm--test_efficientnet.r160_in1k"
try:
    load_model("timm:" + name)
except Exception as err:
    print("before:", type(err).__name__)
torch.manual_seed(0)
reference = timm.create_model(name, pretrained=False).eval()
(repo / "refs").mkdir(parents=True)
(repo / "refs" / "main").write_text("0" * 40)
(repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
safetensors.torch.save_file(reference.state_dict(), repo / "snapshots" / ("0" * 40) / "model.safetensors")
model, meta = load_model("timm:" + name)
x = torch.rand(2, 3, 64, 64)
mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(1, 3, 1, 1)
with torch.no_grad():
    print("equal:", torch.allclose(model(x), reference((x - mean) / std), atol=1e-5))
print("meta:", meta["kind"], meta["arch"], meta["num_classes"], meta["input_shape"])
"""


@pytest.mark.skipif(not _installed("timm"), reason="needs the timm extra (requirements-dev.txt)")
def test_timm_weights_from_the_hugging_face_cache(tmp_path: Path) -> None:
    """In a process of its own: huggingface_hub reads its cache location and offline flag at import."""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", _TIMM_OFFLINE, str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "before: CheckpointError" in run.stdout  # not in the cache, no network: one clear error
    assert "equal: True" in run.stdout
    assert "meta: timm test_efficientnet.r160_in1k 1000 (3, 160, 160)" in run.stdout


@pytest.mark.skipif(not _installed("robustbench"), reason="needs the robustbench extra (requirements-dev.txt)")
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:pkg_resources:UserWarning")
def test_robustbench_model_from_its_model_dir_layout(tmp_path: Path) -> None:
    """RobustBench keeps ``<model_dir>/<dataset>/<threat>/<name>.pt``; its models normalise inside."""
    sources._robustbench_utils()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    with pytest.raises(CheckpointError, match="could not get the weights from RobustBench"):
        load_model("robustbench:Ding2020MMA:cifar10:Linf", cache_dir=tmp_path / "empty")
    torch.manual_seed(0)
    reference = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Ding2020MMA"]["model"]().eval()
    (tmp_path / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "cifar10" / "Linf" / "Ding2020MMA.pt")
    model, meta = load_model("robustbench:Ding2020MMA:cifar10:Linf", cache_dir=tmp_path)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(_logits(model, x), _logits(reference, x))
    assert (meta["kind"], meta["dataset"], meta["threat_model"], meta["num_classes"]) == ("robustbench", "cifar10",
                                                                                         "Linf", 10)
    with pytest.raises(InvalidArgument, match="RobustBench has no model 'Nobody2099'"):
        load_model("robustbench:Nobody2099:cifar10:Linf", cache_dir=tmp_path)


def test_the_command_line_refuses_weights_that_do_not_fit_the_dataset(
    torch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--weights goes through load_model; an ImageNet model on mnist5k is one error naming both mismatches."""
    from robustness.cli import main  # noqa: PLC0415

    cached = torch_home / "hub" / "checkpoints" / Path(tvm.ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tvm.resnet18().state_dict(), cached)
    for command in (["attack"], ["filter", "--n-thresholds", "3"]):
        assert main([*command, "--weights", "torchvision:resnet18:IMAGENET1K_V1", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: torchvision:resnet18:IMAGENET1K_V1 cannot be evaluated on mnist5k: it predicts "
                              "1000 classes, mnist5k has 10 and takes 3-channel images, mnist5k's have 1")


def test_check_fits_passes_the_dataset_a_model_was_trained_for(tmp_path: Path) -> None:
    train(TrainConfig(arch="mnist_cnn", epochs=0, models_root=str(tmp_path), device="cpu"))
    _, meta = load_model(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 0, tmp_path))
    sources.check_fits(meta, "mnist5k")
    sources.check_fits(meta, "mnist")  # the same images, all of them
    with pytest.raises(InvalidArgument, match="predicts 10 classes, tinyimagenet has 200 and takes 1-channel"):
        sources.check_fits(meta, "tinyimagenet")
