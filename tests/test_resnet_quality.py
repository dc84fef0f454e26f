"""ResNet quality kind: the degradation proxy's bookkeeping, torchvision key names, pretrained evaluation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.records import Case
from milestones.suites import resnet as R

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _ctx(config, scale="proxy", batch=8, **kw):
    return CaseContext.for_case(Case("resnet", config, "quality", scale, "cpu", "float32", batch), **kw)


@pytest.mark.slow
def test_degradation_case_records_per_seed_outcomes():
    cfg = dataclasses.replace(R.SUITE.configs["resnet-degradation"].params, shallow=8, deep=14, steps=4,
                              eval_every=2, final_evals=1, target_train_error=1.0)
    assert R.SUITE.kind_fn("quality", cfg) is R.degradation
    out = R.degradation(cfg, _ctx("resnet-degradation", options={"n_seeds": 2}))
    e = {n: out.metrics[f"train_error.{n}"].samples for n in ("plain8", "plain14", "resnet8", "resnet14")}
    assert all(len(v) == 2 for v in e.values())
    want = R.degradation_decision(list(e["plain8"]), list(e["plain14"]), list(e["resnet14"]), cfg.match_tolerance)
    assert out.metrics["claim_held.degradation"].samples == tuple(want["degradation"])
    assert out.metrics["claim_held"].samples == tuple(want["claim_held"])
    assert out.metrics["steps_to_target.plain14"].samples == (2.0, 2.0)  # target 100%: first evaluation
    c = out.artifacts["curves"]["resnet14.seed1"]
    assert c["step"] == [2.0, 4.0] and len(c["series"]["train_error"]) == 2
    assert len(out.artifacts["curves"]["resnet14.seed1.loss"]["series"]["loss"]) == 4
    claims = {c["id"]: c for c in out.info["claims"]}
    assert set(claims) == {"degradation", "residual_fixes"}
    assert claims["degradation"]["held"] == [int(v) for v in want["degradation"]]
    assert claims["residual_fixes"]["seeds"] == [0, 1] and "Fig. 6" in claims["residual_fixes"]["source"]


@pytest.mark.parametrize("ps,pd,rd,deg,fix", [
    (0.02, 0.60, 0.015, 1, 1),  # Fig. 6: deep plain worse, deep residual best
    (0.02, 0.60, 0.029, 1, 1),  # within the 0.01 match tolerance of plain-shallow
    (0.02, 0.60, 0.040, 1, 0),  # the docs' old figures: beats plain-deep but not plain-shallow
    (0.02, 0.01, 0.005, 0, 1),  # no degradation
    (0.02, 0.60, 0.700, 1, 0),  # residual worse than plain-deep
])
def test_degradation_decision_holds_and_fails(ps, pd, rd, deg, fix):
    d = R.degradation_decision([ps], [pd], [rd], 0.01)
    assert d == {"degradation": [float(deg)], "residual_fixes": [float(fix)], "claim_held": [float(deg * fix)]}


@pytest.mark.slow
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
        R.pretrained_quality(R.SUITE.configs["resnet50-v1.5-paper"].params, _ctx("resnet50-v1.5-paper", "paper"))


@pytest.mark.slow
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
    out = R.pretrained_quality(cfg, _ctx("resnet50-v1.5-paper", "paper",
                              data={"imagenet": str(tmp_path), "weights": str(tmp_path / "r18.pth")}))
    assert out.metrics["top1_accuracy"].value == pytest.approx(200 / 3)
    assert out.info["weights"]["tensors"] == len(model.state_dict())
    wrong = R.ImageNetResNet(18)  # keys match but a 50-layer file does not: the error names the file
    torch.save(R.ImageNetResNet(34).state_dict(), tmp_path / "r34.pth")
    from milestones.harness.errors import UsageError

    with pytest.raises(UsageError, match="keys do not match"):
        from milestones.suites._vision_data import load_state_dict_file

        load_state_dict_file(wrong, tmp_path / "r34.pth")
