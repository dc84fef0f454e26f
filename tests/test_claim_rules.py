"""The strengthened claim rules on synthetic outcomes that make them hold and fail (nothing trains here)."""

from __future__ import annotations

import pytest

from milestones.suites import dqn, parallel, resnet, simclr, transformer


@pytest.mark.parametrize("rs,fix", [
    (0.030, 1),  # the deep ResNet beats the shallow one: an accuracy gain from depth
    (0.010, 0),  # the shallow ResNet is better: no gain from depth, although the deep one beats plain-deep
    (0.015, 0),  # a tie is no gain
])
def test_residual_fixes_compares_with_the_shallow_resnet(rs, fix):
    d = resnet.degradation_decision([0.02], [0.60], [0.015], 0.01, res_shallow=[rs])
    assert d["residual_fixes"] == [float(fix)]


def test_degradation_needs_the_deep_plain_net_above_over_the_second_half():
    shallow = [0.9, 0.5, 0.3, 0.2]
    above = [0.9, 0.6, 0.4, 0.3]    # above at every evaluation of the second half
    crosses = [0.9, 0.6, 0.25, 0.3]  # ends above, but dips below at the third evaluation
    d = resnet.degradation_decision([0.2, 0.2], [0.3, 0.3], [0.1, 0.1], 0.01,
                                    curves=([shallow, shallow], [above, crosses]))
    assert d["degradation"] == [1.0, 0.0]
    # the early evaluations (chance level for both) are not judged
    assert resnet.above_throughout([0.9, 0.5, 0.3, 0.2], [0.8, 0.6, 0.4, 0.3], 0.5)
    assert not resnet.above_throughout([0.9, 0.5, 0.3, 0.2], [0.8, 0.6, 0.4, 0.3])  # "throughout": every one
    assert not resnet.above_throughout([], [])


@pytest.mark.parametrize("agent,rand,held", [
    ([20.0], [-20.4], 1),   # Pong: the paper's DQN score, 232% of the human-random gap
    ([18.5], [-20.4], 1),   # 224%: within 10 points of it
    ([12.0], [-20.4], 0),   # 186%: beats the human (and random) but falls short of the paper's DQN
    ([-19.0], [-20.4], 0),  # barely above random
])
def test_dqn_is_decided_against_table1_at_paper_scale(agent, rand, held):
    assert dqn.table1_decision(agent, rand, "Pong", tol=10.0) == [float(held)]


def test_dqn_table1_tolerance_is_in_human_normalised_points():
    assert dqn.table1_decision([12.0], [-20.4], "Pong", tol=50.0) == [1.0]


def test_dqn_human_normalised_score():
    assert dqn.human_normalised(368, 0, 368) == 100.0 and dqn.human_normalised(0, 0, 368) == 0.0
    assert dqn.human_normalised(5, 3, 3) is None


def test_simclr_paper_claim_is_the_abstract_sentence_as_stated():
    assert simclr.ABSTRACT_PAPER.strength == "as stated" and simclr.ABSTRACT_PAPER.quoted
    assert round(simclr.SIMCLR_PAPER[("linear", 4)] / simclr.PREVIOUS_SOTA - 1, 3) == 0.07  # the 7% gain
    rule = simclr.ABSTRACT_PAPER.rule.format(floor=75.5, gain=75.5 / 71.5 - 1, prev=71.5)
    assert "75.5%" in rule and "5.6%" in rule and "71.5%" in rule


def test_parallel_lr_rule_says_it_can_fail_only_by_sampling_noise():
    assert "can fail only by sampling noise" in parallel.LR_RULE.rule
    assert parallel.LR_RULE.strength == "weaker analogue"
    assert parallel.lr_rule_decision([1.01, 0.98], 0.05) and not parallel.lr_rule_decision([1.01, 1.2], 0.05)


def test_transformer_claim_is_labelled_as_testing_only_time_to_train():
    assert transformer.ABSTRACT.strength == "weaker analogue"
    assert "less time to train" in transformer.ABSTRACT.tests and "not superior quality" in transformer.ABSTRACT.tests


@pytest.mark.parametrize("values,paper,points,hib,held", [
    ([82.0, 81.7], 82.8, 1.0, True, [True, False]),    # DCGAN Table 1: accuracy at most 1 point below 82.8
    ([23.4, 23.6], 22.48, 1.0, False, [True, False]),  # DCGAN Table 2: error at most 1 point above 22.48
    ([75.5, 75.4], 76.5, 1.0, True, [True, False]),    # SimCLR: 75.5% is the abstract's floor
    ([9.25, 9.26], 8.75, 0.5, False, [True, False]),   # ResNet Table 6
])
def test_paper_scale_table_claims_hold_near_the_paper_and_fail_beyond(values, paper, points, hib, held):
    from milestones.suites import _paper

    assert _paper.near_paper(values, paper, points, hib) == held
