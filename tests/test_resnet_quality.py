"""ResNet quality kind: the degradation proxy's bookkeeping, torchvision key names, pretrained evaluation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.records import Case
from milestones.suites import resnet as R


@pytest.fixture(autouse=True)
def _one_thread():
    # Small tensors on a shared 2-core machine: more threads only add contention.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ctx(config, scale="proxy", batch=8, **kw):
    return CaseContext.for_case(Case("resnet", config, "quality", scale, "cpu", "float32", batch), **kw)


def test_degradation_case_records_per_seed_outcomes():
    cfg = dataclasses.replace(R.SUITE.configs["resnet-degradation"].params, shallow=8, deep=14, steps=4,
                              eval_every=2, final_evals=1, target_train_error=1.0)
    out = R.quality(cfg, _ctx("resnet-degradation", options={"n_seeds": 2}))
    e = {n: out.metrics[f"train_error.{n}"].samples for n in ("plain8", "plain14", "resnet8", "resnet14")}
    assert all(len(v) == 2 for v in e.values())
    deg = tuple(float(b > a) for a, b in zip(e["plain8"], e["plain14"]))
    fix = tuple(float(c < b) for b, c in zip(e["plain14"], e["resnet14"]))
    assert out.metrics["degradation_observed"].samples == deg
    assert out.metrics["claim_held"].samples == tuple(a * b for a, b in zip(deg, fix))
    assert out.metrics["steps_to_target.plain14"].samples == (2.0, 2.0)  # target 100%: first evaluation
    c = out.artifacts["curves"]["resnet14.seed1"]
    assert c["step"] == [1, 2, 3, 4] and len(c["loss"]) == 4 and c["eval_step"] == [2, 4]


def test_resnet50_state_dict_names_match_torchvision():
    sd = R.ImageNetResNet(50, v15=True).state_dict()
    assert len(sd) == 320  # torchvision resnet50: 161 parameters + 159 BatchNorm buffers
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
              "layer1.0.downsample.1.num_batches_tracked", "layer3.5.bn3.bias", "layer4.2.conv3.weight",
              "fc.weight", "fc.bias"):
        assert k in sd
    assert sum(v.numel() for k, v in R.ImageNetResNet(50, v15=True).named_parameters()) == 25_557_032


def test_pretrained_eval_skips_without_data():
    with pytest.raises(SkipCase, match="needs --data imagenet=PATH"):
        R.quality(R.SUITE.configs["resnet50-v1.5-paper"].params, _ctx("resnet50-v1.5-paper", "paper"))


def test_pretrained_eval_round_trip_on_a_tiny_folder(tmp_path):
    from PIL import Image

    for wnid, n in (("n01", 2), ("n02", 1)):
        (tmp_path / wnid).mkdir()
        for i in range(n):
            Image.new("RGB", (256, 300), (40 * i, 90, 200)).save(tmp_path / wnid / f"{i}.JPEG")
    torch.manual_seed(0)
    model = R.ImageNetResNet(18, v15=True)
    with torch.no_grad():  # always class 0 (n01): 2 of 3 images right
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[0] = 3.0
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    cfg = R.ResNetEvalConfig(depth=18)
    out = R.quality(cfg, _ctx("resnet50-v1.5-paper", "paper",
                              data={"imagenet": str(tmp_path), "weights": str(tmp_path / "r18.pth")}))
    assert out.metrics["top1_accuracy"].value == pytest.approx(200 / 3)
    assert out.info["weights"]["tensors"] == len(model.state_dict())
    wrong = R.ImageNetResNet(18)  # keys match but a 50-layer file does not: the error names the file
    torch.save(R.ImageNetResNet(34).state_dict(), tmp_path / "r34.pth")
    from milestones.harness.errors import UsageError

    with pytest.raises(UsageError, match="keys do not match"):
        from milestones.suites._vision_data import load_state_dict_file

        load_state_dict_file(wrong, tmp_path / "r34.pth")
