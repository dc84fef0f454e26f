"""DQN suite: preprocessing on real ALE frames, networks, replay memory, schedules, smoke cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from milestones.harness.context import CaseContext
from milestones.harness.errors import UsageError
from milestones.harness.launch.inprocess import run_kind
from milestones.harness.records import Case
from milestones.suites import dqn
from tests.quick_timing import quick

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _ctx(config: str, kind: str, scale: str = "smoke", batch: int | None = None) -> CaseContext:
    return CaseContext.for_case(Case("dqn", config, kind, scale, "cpu", "float32", batch))


# ---------------------------------------------------------------------------------- preprocessing
def test_preprocessed_pong_frames_are_84x84_uint8_stacks_of_four():
    env = dqn.AtariEnv("Pong", noop_max=0, seed=0)
    s = env.reset()
    assert s.shape == (4, 84, 84) and s.dtype == np.uint8
    assert all((s[i] == s[0]).all() for i in range(4))  # the reset frame pads the stack
    for _ in range(3):
        s2, r, term, trunc, frame = env.step(0)
    assert s2.shape == (4, 84, 84) and frame.shape == (84, 84) and frame.dtype == np.uint8
    assert (s2[-1] == frame).all() and isinstance(r, float)
    assert s2.std() > 0  # real screen content, not a blank frame
    as_float = dqn.DQN2013(env.n_actions)(torch.as_tensor(s2)[None])
    assert as_float.shape == (1, env.n_actions) and as_float.dtype == torch.float32
    env.close()


@pytest.mark.slow
def test_frame_skip_repeats_the_action_and_max_pools_the_last_two_frames():
    env = dqn.AtariEnv("Breakout", noop_max=0, seed=0, frame_skip=4)
    ref = dqn.make_ale("Breakout", seed=0)  # same seed, stepped by hand with frameskip=1
    env.reset()
    ref.reset(seed=0)
    _, _, _, _, frame = env.step(1)
    grey = [ref.step(1)[0] for _ in range(4)]
    expected = dqn.resize_area(np.maximum(grey[-1], grey[-2]))
    assert (frame == expected).all()
    assert not (frame == dqn.resize_area(grey[-1])).all() or (grey[-1] == np.maximum(grey[-1], grey[-2])).all()
    env.close()
    ref.close()


def test_area_resize_averages_blocks():
    img = np.arange(168 * 168, dtype=np.int64).reshape(168, 168) % 251
    img = img.astype(np.uint8)
    out = dqn.resize_area(img, 84)
    blocks = img.reshape(84, 2, 84, 2).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(out.astype(np.float64) - blocks).max() <= 0.5
    assert (dqn.resize_area(np.full((210, 160), 77, np.uint8)) == 77).all()


# -------------------------------------------------------------------------------------- networks
def test_network_parameter_counts_and_shapes_follow_the_papers():
    # 2013: 4*64*16+16 + 16*16*32+32 + 2592*256+256 + 256*4+4 (Breakout's 4 actions)
    assert dqn.expected_params("2013", 4) == 677_172
    assert sum(p.numel() for p in dqn.DQN2013(4).parameters()) == 677_172
    # Nature: 8224 + 32832 + 36928 + 3136*512+512 + 512*18+18
    assert dqn.expected_params("nature", 18) == 1_693_362
    assert sum(p.numel() for p in dqn.DQNNature(18).parameters()) == 1_693_362
    assert dqn.layer_shapes(dqn.DQN2013(4)) == {"conv1": [16, 20, 20], "conv2": [32, 9, 9], "fc": [256], "out": [4]}
    shapes = dqn.layer_shapes(dqn.DQNNature(6))
    assert shapes["conv3"] == [64, 7, 7] and shapes["fc"] == [512] and shapes["out"] == [6]
    with pytest.raises(UsageError):
        dqn.build(dqn.DQNConfig("alexnet"), 4)


def test_deepmind_rmsprop_puts_eps_under_the_square_root():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = dqn.DeepMindRMSprop([w], lr=0.1, alpha=0.95, eps=0.01)
    w.grad = torch.tensor([0.5, -1.0])
    opt.step()
    g, g2 = 0.05 * w.grad, 0.05 * w.grad**2
    expected = torch.tensor([1.0, -2.0]) - 0.1 * w.grad / torch.sqrt(g2 - g * g + 0.01)
    assert torch.allclose(w.detach(), expected, atol=1e-7)


# ------------------------------------------------------------------------------------- schedules
def test_epsilon_anneals_linearly_from_1_to_0_1_over_a_million_frames():
    cfg = dqn.DQNConfig("nature")
    assert dqn.epsilon(cfg, 0) == 1.0
    assert dqn.epsilon(cfg, 500_000) == pytest.approx(0.55)
    assert dqn.epsilon(cfg, 1_000_000) == pytest.approx(0.1)
    assert dqn.epsilon(cfg, 5_000_000) == pytest.approx(0.1)
    assert cfg.eval_eps == 0.05 and cfg.target_update == 10_000 and cfg.lr == 2.5e-4


# ---------------------------------------------------------------------------------------- replay
def _filled(n_steps: int, cap: int, episode_len: int, seed: int = 0) -> dqn.ReplayMemory:
    mem = dqn.ReplayMemory(cap, (2, 2), history=4, seed=seed)
    mem.start_episode(np.full((2, 2), 0, np.uint8))
    for t in range(n_steps):
        end = (t + 1) % episode_len == 0
        mem.add(t % 3, 1.0, end, False, np.full((2, 2), (t + 1) % 256, np.uint8))
        if end:
            mem.start_episode(np.full((2, 2), (t + 1) % 256, np.uint8))
    return mem


def test_replay_rebuilds_stacks_and_pads_at_episode_start():
    mem = _filled(30, 100, episode_len=10)
    s, a, r, term, s2 = mem.sample(256)
    newest, nxt = s[:, -1, 0, 0].astype(int), s2[:, -1, 0, 0].astype(int)
    assert ((nxt == newest + 1) | term).all()
    assert (a == newest % 3).all()  # the action stored with frame t is t % 3
    for stack in s:  # within an episode frames count up by one, padded with the first frame
        v = stack[:, 0, 0].astype(int)
        first = (v[-1] // 10) * 10
        assert (v == np.maximum(np.arange(v[-1] - 3, v[-1] + 1), first)).all()
    assert term[newest % 10 == 9].all() and not term[newest % 10 != 9].any()


def test_replay_samples_uniformly_and_skips_truncated_transitions():
    from scipy.stats import chisquare

    mem = dqn.ReplayMemory(50, (1,), history=1, frame_dtype=np.int64, seed=1)
    mem.start_episode(np.array([0]))
    for t in range(40):
        trunc = t == 19  # a time limit cuts the first episode
        mem.add(0, 0.0, False, trunc, np.array([t + 1]))
        if trunc:
            mem.start_episode(np.array([1000]))
    s = np.concatenate([mem.sample(512)[0][:, -1, 0] for _ in range(40)])
    assert 19 not in set(s.tolist())  # its next frame was overwritten by the reset frame
    values, counts = np.unique(s, return_counts=True)
    assert len(values) == 39
    assert chisquare(counts).pvalue > 1e-3


def test_replay_ring_buffer_never_serves_overwritten_frames():
    mem = _filled(500, 64, episode_len=1000)
    s, _, _, _, s2 = mem.sample(512)
    v = s[:, :, 0, 0].astype(int)
    assert (np.diff(v, axis=1) % 256 == 1).all()  # consecutive frames: nothing stale inside a stack
    assert ((s2[:, -1, 0, 0].astype(int) - v[:, -1]) % 256 == 1).all()


# ---------------------------------------------------------------------------------- smoke cases
def test_fidelity_cases_record_the_papers_values():
    for name in ("dqn-2013", "dqn-nature"):
        cfg = dqn.SUITE.configs[name].params
        out = dqn.fidelity(cfg, _ctx(name, "fidelity"))
        assert out.metrics["params_match_paper"].value == 1.0
        assert out.metrics["hparams_match_paper"].value == 1.0
    bad = dqn.replace_cfg(dqn.SUITE.configs["dqn-nature"].params, lr=1e-3)
    assert dqn.fidelity(bad, _ctx("dqn-nature", "fidelity")).metrics["hparams_match_paper"].value == 0.0


@pytest.mark.slow
def test_speed_smoke_measures_learner_and_actor_on_pong():
    cfg = dqn.SUITE.configs["dqn-2013-smoke"].params
    out = run_kind(dqn.speed, cfg, quick(_ctx("dqn-2013-smoke", "speed", batch=32)))
    m = out.metrics
    for k in ("learner.step_time", "learner.throughput", "env.throughput", "actor.step_time", "actor.throughput"):
        assert m[k].samples and all(x > 0 for x in m[k].samples), k
    assert m["learner.flops"].value > 0
    assert out.info["game"] == "Pong" and out.info["n_actions"] == 6


@pytest.mark.slow
def test_cartpole_smoke_learns_to_beat_the_random_policy():
    cfg = dqn.SUITE.configs["dqn-cartpole-smoke"].params
    out = dqn.quality(cfg, _ctx("dqn-cartpole-smoke", "quality", batch=32))
    m = out.metrics
    assert len(m["agent_score"].samples) == 1 and len(m["claim_held"].samples) == 1
    assert m["agent_score"].value > m["random_score"].value
    c = out.artifacts["curves"]
    assert "loss" in c["dqn.seed0.loss"]["series"] and set(c["dqn.seed0"]["series"]) == {"return"}
    assert out.info["claims"][0]["held"] == [int(m["claim_held"].samples[0])]


def test_beats_random_requires_a_clear_margin():
    assert dqn.beats_random([10, 11, 12, 10], [1, 2, 1, 2])
    assert not dqn.beats_random([2, 3, 1, 2], [1, 2, 1, 2])
