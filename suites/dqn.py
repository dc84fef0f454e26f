"""DQN: Playing Atari with Deep Reinforcement Learning (Mnih et al., arXiv 1312.5602, 2013) and
Human-level control through deep reinforcement learning (Mnih et al., Nature 518, 2015).

Model, environment, replay, learner and evaluation in one file; the papers' hyperparameters are the
defaults and every deviation is commented where it is made.

- Networks: the 2013 net (84x84x4 -> conv 16 8x8/4 -> conv 32 4x4/2 -> FC 256 -> one output per
  action) and the Nature net (conv 32 8x8/4, 64 4x4/2, 64 3x3/1, FC 512).
- Preprocessing is written here rather than with `gymnasium.wrappers.AtariPreprocessing`: that wrapper
  needs OpenCV (not a dependency of this project) for its resize. Ours does the same steps: the base
  ALE env runs with `frameskip=1`, each action is repeated k times (rewards summed), the pixel-wise
  max of the last two grey frames removes sprite flicker (Nature), the frame is resized to 84x84 by
  exact area averaging (what OpenCV's INTER_AREA does), and the last 4 frames are stacked.
  The 2013 paper instead scaled to 110x84 and cropped "roughly the playing area" without saying which
  rows; we use the Nature resize for both networks.
- Deterministic ALE (`repeat_action_probability=0`) as in both papers; gymnasium's v5 default of
  sticky actions (0.25) came later (Machado et al. 2018).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from milestones.harness import suite_api as api
from milestones.harness.context import CaseContext
from milestones.harness.errors import UsageError
from milestones.harness.extras import require
from milestones.harness.measure.flops import count_flops, count_params
from milestones.harness.records import CaseOutput
from milestones.harness.registry import register_suite

SUITE = register_suite("dqn", title="Playing Atari with Deep Reinforcement Learning", arxiv="1312.5602", year=2013)


# ---------------------------------------------------------------------------------------------- model
class DQN2013(nn.Module):
    """Sec. 4.1 (2013): 16 8x8/4 -> 32 4x4/2 -> 256 -> |A|, rectifiers after every hidden layer."""

    def __init__(self, n_actions: int, history: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(history, 16, 8, 4)  # -> 16x20x20
        self.conv2 = nn.Conv2d(16, 32, 4, 2)  # -> 32x9x9
        self.fc = nn.Linear(32 * 9 * 9, 256)
        self.out = nn.Linear(256, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.out(F.relu(self.fc(torch.flatten(x, 1))))


class DQNNature(nn.Module):
    """Nature 2015, Methods: 32 8x8/4 -> 64 4x4/2 -> 64 3x3/1 -> 512 -> |A|."""

    def __init__(self, n_actions: int, history: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(history, 32, 8, 4)  # -> 32x20x20
        self.conv2 = nn.Conv2d(32, 64, 4, 2)  # -> 64x9x9
        self.conv3 = nn.Conv2d(64, 64, 3, 1)  # -> 64x7x7
        self.fc = nn.Linear(64 * 7 * 7, 512)
        self.out = nn.Linear(512, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return self.out(F.relu(self.fc(torch.flatten(x, 1))))


class MLPQ(nn.Module):
    """Small Q-network for CartPole, the fastest check of the learning loop (not from the papers)."""

    def __init__(self, n_actions: int, obs_dim: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1).float())


def expected_params(network: str, n_actions: int, history: int = 4) -> int:
    """Parameter count worked out by hand from the papers' layer descriptions (weights + biases)."""
    if network == "2013":
        layers = [(history * 8 * 8, 16), (16 * 4 * 4, 32), (32 * 9 * 9, 256), (256, n_actions)]
    elif network == "nature":
        layers = [(history * 8 * 8, 32), (32 * 4 * 4, 64), (64 * 3 * 3, 64), (64 * 7 * 7, 512), (512, n_actions)]
    else:
        raise UsageError(f"no paper parameter count for network {network!r}")
    return sum(fan_in * out + out for fan_in, out in layers)


# ------------------------------------------------------------------------------------------ optimizer
class DeepMindRMSprop(torch.optim.Optimizer):
    """The RMSProp of DeepMind's Nature code (NeuralQLearner.lua), written out:

        g  <- a*g  + (1-a)*grad          (gradient momentum 0.95)
        g2 <- a*g2 + (1-a)*grad^2        (squared gradient momentum 0.95)
        w  <- w - lr * grad / sqrt(g2 - g^2 + eps)      (eps = "min squared gradient" 0.01)

    `torch.optim.RMSprop(centered=True, alpha=0.95)` is the same except that it adds eps *outside*
    the square root: sqrt(g2 - g^2) + eps. The two agree when eps_torch = sqrt(0.01) = 0.1 only while
    the variance term is negligible, so no torch eps reproduces DeepMind's exactly; hence this class.
    """

    def __init__(self, params, lr: float = 2.5e-4, alpha: float = 0.95, eps: float = 0.01) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            a, lr, eps = group["alpha"], group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["g"], st["g2"] = torch.zeros_like(p), torch.zeros_like(p)
                g, g2 = st["g"], st["g2"]
                g.mul_(a).add_(p.grad, alpha=1 - a)
                g2.mul_(a).addcmul_(p.grad, p.grad, value=1 - a)
                p.addcdiv_(p.grad, (g2 - g * g + eps).sqrt_(), value=-lr)
        return None


# -------------------------------------------------------------------------------------- environment
@lru_cache(maxsize=8)
def _area_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Row-stochastic (n_out, n_in) matrix: each output pixel averages the input pixels it covers,
    with fractional weights at the edges (area interpolation, as OpenCV's INTER_AREA when shrinking)."""
    m = np.zeros((n_out, n_in), dtype=np.float32)
    scale = n_in / n_out
    for o in range(n_out):
        lo, hi = o * scale, (o + 1) * scale
        for i in range(int(math.floor(lo)), min(int(math.ceil(hi)), n_in)):
            m[o, i] = min(hi, i + 1) - max(lo, i)
    return torch.from_numpy(m / scale)


def resize_area(frame: np.ndarray, size: int = 84) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8 by area averaging (two small matrix products)."""
    h, w = frame.shape
    out = _area_matrix(h, size) @ torch.from_numpy(frame).float() @ _area_matrix(w, size).T
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def make_ale(game: str, seed: int = 0, max_episode_frames: int = 108_000):
    """The base ALE env: grey frames, every frame (frameskip=1), deterministic, minimal action set."""
    ale_py = require("ale_py")
    gymnasium = require("gymnasium")

    gymnasium.register_envs(ale_py)
    env = gymnasium.make(f"ALE/{game}-v5", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0,
                         full_action_space=False, max_num_frames_per_episode=max_episode_frames)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


class AtariEnv:
    """ALE with the papers' preprocessing. `reset()`/`step(a)` return (4, 84, 84) uint8 stacks.

    step() returns (stack, reward, terminal, truncated, frame) where `reward` is the raw game score
    (clipping happens in the learner, as both papers clip only in training) and `frame` the newest
    preprocessed frame (what the replay memory stores).
    """

    def __init__(self, game: str, frame_skip: int = 4, noop_max: int = 30, history: int = 4, size: int = 84,
                 seed: int = 0, max_episode_frames: int = 108_000) -> None:
        self.env = make_ale(game, seed, max_episode_frames)
        self.frame_skip, self.noop_max, self.size = frame_skip, noop_max, size
        self.n_actions = int(self.env.action_space.n)
        self.frames: deque[np.ndarray] = deque(maxlen=history)
        self.rng = np.random.default_rng(seed)

    def _preprocess(self, last: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
        # Nature: "take the maximum value for each pixel colour value over the frame being encoded and
        # the previous frame" (sprites that flicker on alternate frames).
        frame = last if prev is None else np.maximum(last, prev)
        return resize_area(frame, self.size)

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset()
        # Nature: up to 30 no-op actions at the start of each episode (random start states).
        for _ in range(int(self.rng.integers(0, self.noop_max + 1)) if self.noop_max else 0):
            obs, _, term, trunc, _ = self.env.step(0)
            if term or trunc:
                obs, _ = self.env.reset()
        frame = self._preprocess(obs, None)
        for _ in range(self.frames.maxlen):
            self.frames.append(frame)
        return self.stack()

    def stack(self) -> np.ndarray:
        return np.stack(self.frames)

    def step(self, action: int):
        total, prev, last = 0.0, None, None
        term = trunc = False
        for _ in range(self.frame_skip):  # action repeat k (frame skipping, Sec. 5 of 2013)
            obs, r, term, trunc, _ = self.env.step(action)
            total += float(r)
            prev, last = last, obs
            if term or trunc:
                break
        frame = self._preprocess(last, prev)
        self.frames.append(frame)
        return self.stack(), total, bool(term), bool(trunc), frame

    def close(self) -> None:
        self.env.close()


class CartPoleEnv:
    """CartPole-v1 behind the same interface (history 1; the "frame" is the 4-d state)."""

    def __init__(self, seed: int = 0, **_) -> None:
        gymnasium = require("gymnasium")

        self.env = gymnasium.make("CartPole-v1")
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        self.n_actions, self.frame_skip = 2, 1
        self._obs: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset()
        self._obs = obs.astype(np.float32)
        return self._obs[None]

    def step(self, action: int):
        obs, r, term, trunc, _ = self.env.step(action)
        self._obs = obs.astype(np.float32)
        return self._obs[None], float(r), bool(term), bool(trunc), self._obs

    def close(self) -> None:
        self.env.close()


# ------------------------------------------------------------------------------------------- replay
class ReplayMemory:
    """Replay memory that stores each frame once and rebuilds the `history` stacks on sampling, as
    DeepMind's code did (1M frames would otherwise be 4M). Absolute step numbers index a ring buffer.

    Per step t: frame[t] (the newest frame of s_t), action, reward, terminal; s_{t+1}'s newest frame
    is frame[t+1]. Frames before an episode's first step are replaced by that first frame (the env
    pads its stack the same way at reset). A transition cut by a time limit is never sampled: its
    next frame was overwritten by the reset frame and it is not terminal.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, ...], history: int = 4,
                 frame_dtype=np.uint8, seed: int = 0) -> None:
        if capacity <= history + 1:
            raise UsageError(f"replay capacity {capacity} must exceed the history length {history} + 1")
        self.cap, self.history = capacity, history
        self.frames = np.zeros((capacity, *frame_shape), dtype=frame_dtype)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminal = np.zeros(capacity, dtype=np.bool_)
        self.valid = np.zeros(capacity, dtype=np.bool_)
        self.ep_start = np.zeros(capacity, dtype=np.int64)
        self.n = 0  # finalized transitions; the pending frame (the current state's) sits at slot n
        self._start = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return min(self.n, self.cap - self.history)

    def start_episode(self, frame: np.ndarray) -> None:
        s = self.n % self.cap
        self.frames[s], self.ep_start[s], self.valid[s] = frame, self.n, False
        self._start = self.n

    def add(self, action: int, reward: float, terminal: bool, truncated: bool, next_frame: np.ndarray) -> None:
        s = self.n % self.cap
        self.action[s], self.reward[s], self.terminal[s] = action, reward, terminal
        self.valid[s] = terminal or not truncated
        self.n += 1
        if not (terminal or truncated):
            s2 = self.n % self.cap
            self.frames[s2], self.ep_start[s2], self.valid[s2] = next_frame, self._start, False

    def _stack(self, t: np.ndarray, start: np.ndarray) -> np.ndarray:
        idx = t[:, None] + np.arange(-self.history + 1, 1)[None, :]
        idx = np.maximum(idx, start[:, None])
        return self.frames[idx % self.cap]

    def sample(self, batch: int):
        """(s, a, r, terminal, s') as numpy arrays; transitions uniformly from the usable ones."""
        lo = max(0, self.n - self.cap + self.history)  # older frames may be overwritten
        if self.n - lo < 1:
            raise ValueError("replay memory is empty")
        out: list[int] = []
        while len(out) < batch:
            t = self.rng.integers(lo, self.n, size=2 * (batch - len(out)))
            ok = self.valid[t % self.cap]
            out.extend(t[ok][: batch - len(out)].tolist())
        t = np.asarray(out, dtype=np.int64)
        slot = t % self.cap
        start = self.ep_start[slot]
        s = self._stack(t, start)
        s2 = self._stack(t + 1, start)
        return s, self.action[slot], self.reward[slot], self.terminal[slot], s2


# --------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class DQNConfig(api.Params):
    # Units: the papers' "frames" are the frames the agent sees, one per action, i.e. agent steps
    # (Nature: 50M frames = "around 38 days of game experience" = 50M x 4 emulator frames at 60 Hz).
    # Every *_frames field below counts agent steps; emulator frames are frame_skip times more.
    network: str  # "2013" | "nature" | "mlp"
    env: str = "Breakout"  # an ALE game name, or "CartPole"
    frame_skip: int = 4  # 2013 and Nature: k = 4 (2013: k = 3 for Space Invaders)
    history: int = 4
    noop_max: int = 30  # Nature; the 2013 paper used no random no-op starts
    gamma: float = 0.99
    lr: float = 2.5e-4  # Nature Ext. Data Table 1 (the 2013 paper gives none)
    rms_alpha: float = 0.95  # gradient and squared-gradient momentum
    rms_eps: float = 0.01  # "min squared gradient", added under the square root
    optimizer: str = "deepmind_rmsprop"  # or "adam" (CartPole only)
    replay_frames: int = 1_000_000
    replay_start: int = 50_000  # Nature: uniform random policy for this many frames before learning
    target_update: int = 10_000  # Nature: in parameter updates; 0 = no target network (2013)
    update_every: int = 4  # Nature: one update per 4 actions
    eps_start: float = 1.0
    eps_end: float = 0.1
    eps_frames: int = 1_000_000  # linear annealing over the first 1M frames (both papers)
    eval_eps: float = 0.05  # 2013 Table 1 protocol
    huber: bool = True  # Nature clips the error term to [-1, 1], i.e. the Huber loss; 2013: squared error
    clip_rewards: bool = True
    train_frames: int = 50_000_000  # Nature 50M (2013: 10M)
    # Evaluation protocol of the proxy runs: episodes per evaluation, each capped in agent steps.
    eval_episodes: int = 10
    eval_max_steps: int = 27_000  # 108k frames = the 30-minute ALE cap
    hidden: int = 64  # MLP only
    # Figures for the fidelity check: the papers' hyperparameters, as recorded values.
    paper_params: int | None = None


def replace_cfg(cfg: DQNConfig, **kw) -> DQNConfig:
    return replace(cfg, **kw)


BREAKOUT_ACTIONS, PONG_ACTIONS, FULL_ACTIONS = 4, 6, 18
# Minibatch 32 (both papers), small enough for a CPU: no deviation. 3 seeds for a proxy claim.
_B = dict(batch_size=32, cpu_batch_size=32)
_BATCH = dict(**_B, n_seeds=3)
_ALL = ("smoke", "proxy", "paper")
SUITE.config("dqn-2013", DQNConfig("2013", target_update=0, huber=False, train_frames=10_000_000, noop_max=0,
                                   paper_params=expected_params("2013", BREAKOUT_ACTIONS), **_BATCH),
             scales=_ALL, kinds=("fidelity",),
             description="2013 network on Breakout (4 actions): 84x84x4 -> 16 -> 32 -> 256 -> 4")
SUITE.config("dqn-nature", DQNConfig("nature", paper_params=expected_params("nature", FULL_ACTIONS), env="Pong", **_BATCH),
             scales=_ALL, kinds=("fidelity",), description="Nature network and Ext. Data Table 1 settings")
SUITE.config("dqn-nature-paper", DQNConfig("nature", env="Pong", **_BATCH), scales=("paper",), kinds=("speed",),
             description="Nature learner step (batch 32) and actor steps on Pong")
SUITE.config("dqn-2013-smoke", DQNConfig("2013", env="Pong", target_update=0, huber=False, **_BATCH), scales=("smoke",),
             kinds=("speed",), description="2013 learner step (batch 32) and a few Pong actor steps")
SUITE.config("dqn-nature-smoke", DQNConfig("nature", env="Pong", **_BATCH), scales=("smoke",), kinds=("speed",),
             description="Nature learner step (batch 32) and a few Pong actor steps")
# CartPole: the fastest check of the learning loop. Deviations (not a paper setting): MLP, Adam at
# 1e-3, small replay, short schedules; everything else (replay, target net, epsilon-greedy) as DQN.
SUITE.config("dqn-cartpole-smoke", DQNConfig("mlp", env="CartPole", history=1, noop_max=0, optimizer="adam",
                                             lr=1e-3, replay_frames=10_000, replay_start=200, target_update=100,
                                             update_every=1, eps_frames=1_000, eps_end=0.05, huber=True,
                                             clip_rewards=False, train_frames=2_000, eval_episodes=5,
                                             eval_max_steps=500, n_seeds=1, **_B),
             scales=("smoke", "proxy"), kinds=("quality",),
             description="DQN on CartPole-v1 for 2k steps: the learned policy must beat random")
# Atari proxy: a real game and the 2013 net (the cheaper of the two: a CPU run must finish in minutes),
# schedules shrunk ~100x. Deviations: 12k frames (agent steps) per seed (paper 10M), replay 12k (1M),
# learning from 1k (Nature: 50k), epsilon annealed over the first 6k (1M); evaluation episodes capped
# at 2,000 agent steps. 2013 settings otherwise: no target network, squared error, no no-op starts.
SUITE.config("dqn-breakout-proxy", DQNConfig("2013", env="Breakout", target_update=0, huber=False, noop_max=0,
                                             replay_frames=12_000, replay_start=1_000, eps_frames=6_000,
                                             train_frames=12_000, eval_episodes=8, eval_max_steps=2_000, **_BATCH),
             scales=("proxy",), kinds=("quality",),
             description="2013 DQN on Breakout, 12k agent steps per seed, 3 seeds, vs the random policy")

# Paper-scale quality: the papers' full schedules (days of compute; a GPU). 2013 Table 1 games with the
# 2013 protocol (eval eps 0.05, no random starts; the paper's "fixed number of steps" is not given, so 30
# episodes capped at 108k frames) and the Nature Pong/Breakout rows with no-op starts.
for _game, _slug in (("BeamRider", "beam-rider"), ("Breakout", "breakout"), ("Enduro", "enduro"), ("Pong", "pong"),
                     ("Qbert", "qbert"), ("Seaquest", "seaquest"), ("SpaceInvaders", "space-invaders")):
    SUITE.config(f"dqn-2013-{_slug}-paper",
                 DQNConfig("2013", env=_game, frame_skip=3 if _game == "SpaceInvaders" else 4, target_update=0,
                           huber=False, noop_max=0, replay_start=50_000, train_frames=10_000_000, eval_episodes=30,
                           n_seeds=1, **_B),
                 scales=("paper",), kinds=("quality",), description=f"2013 DQN on {_game}, 10M frames (Table 1)")
for _game, _slug in (("Pong", "pong"), ("Breakout", "breakout")):
    SUITE.config(f"dqn-nature-{_slug}-paper", DQNConfig("nature", env=_game, eval_episodes=30, eval_max_steps=4_500,
                                                                  n_seeds=1, **_B),
                 scales=("paper",), kinds=("quality",),
                 description=f"Nature DQN on {_game}, 50M frames (Ext. Data Table 2 protocol: no-op starts)")


def build(cfg: DQNConfig, n_actions: int) -> nn.Module:
    if cfg.network == "2013":
        return DQN2013(n_actions, cfg.history)
    if cfg.network == "nature":
        return DQNNature(n_actions, cfg.history)
    if cfg.network == "mlp":
        return MLPQ(n_actions, hidden=cfg.hidden)
    raise UsageError(f"unknown DQN network {cfg.network!r} (choose 2013, nature or mlp)")


def make_env(cfg: DQNConfig, seed: int):
    if cfg.env == "CartPole":
        return CartPoleEnv(seed)
    return AtariEnv(cfg.env, cfg.frame_skip, cfg.noop_max, cfg.history, seed=seed)


def epsilon(cfg: DQNConfig, frame: int) -> float:
    """Linear annealing from eps_start to eps_end over eps_frames frames, then constant."""
    frac = min(1.0, frame / cfg.eps_frames) if cfg.eps_frames > 0 else 1.0
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def make_optimizer(cfg: DQNConfig, params):
    if cfg.optimizer == "deepmind_rmsprop":
        return DeepMindRMSprop(params, lr=cfg.lr, alpha=cfg.rms_alpha, eps=cfg.rms_eps)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    raise UsageError(f"unknown DQN optimizer {cfg.optimizer!r}")


# ------------------------------------------------------------------------------------------- fidelity
def _paper_hparams(cfg: DQNConfig) -> dict[str, tuple[float, float, str]]:
    """(ours, paper, unit) for each hyperparameter both papers (or Nature's table) state."""
    nature = cfg.network == "nature"
    out = {
        "minibatch": (cfg.batch_size, 32, "count"),
        "history": (cfg.history, 4, "frames"),
        "frame_skip": (cfg.frame_skip, 4, "frames"),
        "eps_start": (cfg.eps_start, 1.0, "fraction"),
        "eps_end": (cfg.eps_end, 0.1, "fraction"),
        "eps_frames": (cfg.eps_frames, 1_000_000, "frames"),
        "eval_eps": (cfg.eval_eps, 0.05, "fraction"),
        "replay_frames": (cfg.replay_frames, 1_000_000, "frames"),
        "train_frames": (cfg.train_frames, 50_000_000 if nature else 10_000_000, "frames"),
    }
    if nature:
        out.update({
            "lr": (cfg.lr, 2.5e-4, "1"), "rms_alpha": (cfg.rms_alpha, 0.95, "1"), "rms_eps": (cfg.rms_eps, 0.01, "1"),
            "gamma": (cfg.gamma, 0.99, "1"), "target_update": (cfg.target_update, 10_000, "updates"),
            "update_every": (cfg.update_every, 4, "actions"), "replay_start": (cfg.replay_start, 50_000, "frames"),
            "noop_max": (cfg.noop_max, 30, "actions"),
        })
    return out


def layer_shapes(model: nn.Module, history: int = 4) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: shapes.__setitem__(n, list(o.shape[1:])))
             for n, m in model.named_children()]
    with torch.no_grad():
        model(torch.zeros(1, history, 84, 84, device=next(model.parameters()).device))
    for h in hooks:
        h.remove()
    return shapes


@SUITE.kind("fidelity", metrics=("params", "*params*",))
def fidelity(cfg: DQNConfig, ctx: CaseContext) -> CaseOutput:
    n_actions = BREAKOUT_ACTIONS if cfg.network == "2013" else FULL_ACTIONS
    with torch.device("meta"):
        model = build(cfg, n_actions)
        x = torch.empty(1, cfg.history, 84, 84)
    flops, _ = count_flops(lambda: model(x))
    params = count_params(model)
    m = api.Metrics()
    m.single("params", "count", params)
    m.single("macs", "MAC/forward", flops // 2)
    if cfg.paper_params is not None:
        m.single("params_match_paper", "bool", float(params == cfg.paper_params), higher_is_better=True)
    all_ok = True
    for name, (ours, paper, unit) in _paper_hparams(cfg).items():
        # These config echoes were recorded lower-is-better; kept so old records compare alike.
        m.single(f"hparam.{name}", unit, ours, note=f"paper: {paper}", higher_is_better=False)
        all_ok &= math.isclose(ours, paper, rel_tol=1e-12)
    m.single("hparams_match_paper", "bool", float(all_ok), higher_is_better=True)
    with torch.device("meta"):
        shapes = layer_shapes(build(cfg, n_actions), cfg.history)
    return CaseOutput(metrics=m, info={"n_actions": n_actions, "layer_output_shapes": shapes,
                                       "paper_params": cfg.paper_params})


# ------------------------------------------------------------------------------------------- learner
class Learner:
    """Q-learning from replay: online net, target net (or none), loss, optimizer step."""

    def __init__(self, cfg: DQNConfig, n_actions: int, device: torch.device, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.cfg, self.device = cfg, device
        self.q = build(cfg, n_actions).to(device)
        self.target = build(cfg, n_actions).to(device) if cfg.target_update else None
        if self.target is not None:
            self.target.load_state_dict(self.q.state_dict())
            self.target.requires_grad_(False)
        self.opt = make_optimizer(cfg, self.q.parameters())
        self.n_actions, self.updates = n_actions, 0

    def update(self, batch) -> float:
        s, a, r, term, s2 = (torch.as_tensor(v, device=self.device) for v in batch)
        if self.cfg.clip_rewards:
            r = torch.sign(r)  # both papers: +1 / -1 / 0 in training only
        with torch.no_grad():
            q_next = (self.target or self.q)(s2).max(1).values
            y = r + self.cfg.gamma * (~term).float() * q_next
        q = self.q(s).gather(1, a[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, y) if self.cfg.huber else F.mse_loss(q, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.updates += 1
        if self.target is not None and self.updates % self.cfg.target_update == 0:
            self.target.load_state_dict(self.q.state_dict())
        return float(loss.detach())

    @torch.no_grad()
    def act(self, state: np.ndarray, eps: float, rng: np.random.Generator) -> int:
        if rng.random() < eps:
            return int(rng.integers(self.n_actions))
        return int(self.q(torch.as_tensor(state, device=self.device)[None]).argmax(1))


def evaluate(cfg: DQNConfig, env, policy, episodes: int, max_steps: int) -> list[float]:
    """Total (unclipped) game score per episode; an episode is cut at max_steps agent steps."""
    scores = []
    for _ in range(episodes):
        s, total = env.reset(), 0.0
        for _ in range(max_steps):
            s, r, term, trunc, _ = env.step(policy(s))
            total += r
            if term or trunc:
                break
        scores.append(total)
    return scores


def train(cfg: DQNConfig, seed: int, device: torch.device, ctx: CaseContext | None = None,
          batch_size: int | None = None):
    """Train one agent for cfg.train_frames frames; returns (learner, curves, seconds)."""
    env = make_env(cfg, seed)
    rng = np.random.default_rng(seed)
    learner = Learner(cfg, env.n_actions, device, seed)
    state = env.reset()
    frame_shape = state.shape[1:]
    replay = ReplayMemory(cfg.replay_frames, frame_shape, cfg.history,
                          np.uint8 if cfg.env != "CartPole" else np.float32, seed)
    replay.start_episode(state[-1])
    steps = cfg.train_frames
    ep_return, returns, losses = 0.0, {"step": [], "return": []}, {"step": [], "loss": []}
    t0 = time.perf_counter()
    for step in range(steps):
        frame = step  # the papers' frames are agent steps (see DQNConfig)
        # Nature: a uniform random policy until the replay start size is reached.
        eps = 1.0 if frame < cfg.replay_start else epsilon(cfg, frame)
        a = learner.act(state, eps, rng)
        state, r, term, trunc, new_frame = env.step(a)
        replay.add(a, r, term, trunc, new_frame)
        ep_return += r
        if term or trunc:
            returns["step"].append(step)
            returns["return"].append(ep_return)
            if ctx is not None and len(returns["return"]) % 10 == 0:
                ctx.progress(f"seed {seed}", step=step, episodes=len(returns["return"]), episode_return=ep_return)
            state, ep_return = env.reset(), 0.0
            replay.start_episode(state[-1])
        if frame >= cfg.replay_start and step % cfg.update_every == 0:
            loss = learner.update(replay.sample(batch_size or cfg.batch_size))
            if learner.updates % 50 == 1:
                if ctx is not None:
                    ctx.check_finite(step, loss)
                losses["step"].append(step)
                losses["loss"].append(loss)
    env.close()
    return learner, {"returns": returns, "loss": losses}, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------- speed
@SUITE.kind("speed", metrics=("train.*", "infer.*", "act.*",))
def speed(cfg: DQNConfig, ctx: CaseContext) -> api.SpeedPlan:
    env = AtariEnv(cfg.env, cfg.frame_skip, cfg.noop_max, cfg.history, seed=ctx.seed)
    learner = Learner(cfg, env.n_actions, ctx.torch_device, ctx.seed)
    # Learner: replay filled with random frames (speed does not depend on pixel values); one update
    # = sample 32 transitions, build the stacks, copy to the device, Q-learning step.
    rng = np.random.default_rng(ctx.seed)
    fill = 2_000
    replay = ReplayMemory(fill + 10, (84, 84), cfg.history, np.uint8, ctx.seed)
    replay.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    for i in range(fill):
        replay.add(int(rng.integers(env.n_actions)), float(rng.integers(-1, 2)), i % 500 == 499, False,
                   rng.integers(0, 256, (84, 84), dtype=np.uint8))
        if i % 500 == 499:
            replay.start_episode(rng.integers(0, 256, (84, 84), dtype=np.uint8))
    batch = replay.sample(ctx.batch_size)
    s = torch.as_tensor(batch[0], device=ctx.torch_device)
    fwd_bwd_flops, _ = count_flops(lambda: learner.q(s).sum().backward())
    learner_step = api.Step("learner", lambda: learner.update(replay.sample(ctx.batch_size)), ctx.batch_size,
                            "transitions", flops=fwd_bwd_flops)
    # Actor: raw emulator frames/s (random actions, no preprocessing), then agent steps/s with the
    # preprocessing and the network choosing actions at eps = 0.05 (every step runs the network).
    raw = make_ale(cfg.env, ctx.seed)
    n_raw = int(raw.action_space.n)

    def raw_step() -> None:
        _, _, term, trunc, _ = raw.step(int(rng.integers(n_raw)))
        if term or trunc:
            raw.reset()

    state = [env.reset()]

    def agent_step() -> None:
        with torch.no_grad():
            a = int(learner.q(torch.as_tensor(state[0], device=ctx.torch_device)[None]).argmax(1))
        if rng.random() < cfg.eval_eps:
            a = int(rng.integers(env.n_actions))
        s2, _, term, trunc, _ = env.step(a)
        state[0] = env.reset() if (term or trunc) else s2

    # The emulator runs on the CPU whatever the case's device; one raw step is one emulator frame. One agent
    # step is frame_skip emulator frames, so actor.throughput is in emulator frames/s.
    steps = (learner_step,
             api.Step("env", raw_step, 1, "frames", count_flops=False, device="cpu",
                      note="raw emulator frames, random actions, no preprocessing"),
             api.Step("actor", agent_step, cfg.frame_skip, "frames",
                      note=f"one agent step (preprocessing, network at eps {cfg.eval_eps}) = "
                           f"{cfg.frame_skip} frames"))
    # The plan's steps run after this returns; the emulators are released with the case process.
    return api.SpeedPlan(steps=steps, model=learner.q,
                         info={"game": cfg.env, "n_actions": env.n_actions, "network": cfg.network})


# ------------------------------------------------------------------------------------------- quality
def _mean_std(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


_ABSTRACT_SENTENCE = ("We find that it outperforms all previous approaches on six of the games and surpasses a "
                      "human expert on three of them.")
BEATS_RANDOM_ATARI = api.claim_text(
    "dqn", "beats_random", _ABSTRACT_SENTENCE, "Mnih et al. 2013, Abstract and Table 1 (the Random row)",
    "per seed: over {episodes} evaluation episodes (eps {eps}, capped at {cap} agent steps), the trained agent's "
    "mean score exceeds the uniform random policy's by more than max(2 standard errors of the difference, 1 "
    "point), after {frames} agent steps of training on {env}",
    strength=api.WEAKER, tests="only that the trained agent beats a random policy on {env}")
BEATS_RANDOM_CARTPOLE = api.claim_text(
    "dqn", "beats_random",
    "The model is a convolutional neural network, trained with a variant of Q-learning, whose input is raw "
    "pixels and whose output is a value function estimating future rewards.",
    "Mnih et al. 2013, Abstract (the learning method; CartPole is not one of the paper's games)",
    BEATS_RANDOM_ATARI.rule, strength=api.WEAKER, tests="only that the learning method beats a random policy on "
    "CartPole's state vector, not pixels", variant="CartPole")
# Table 1 of the 2013 paper, per game: (DQN average, DQN best episode, Human, Random); the same figures as
# baselines/dqn.toml and docs/paper-figures.md (4a).
TABLE1_2013 = {"BeamRider": (4092, 5184, 7456, 354), "Breakout": (168, 225, 31, 1.2), "Enduro": (470, 661, 368, 0),
               "Pong": (20, 21, -3, -20.4), "Qbert": (1952, 4500, 18900, 157), "Seaquest": (1705, 1740, 28010, 110),
               "SpaceInvaders": (581, 1075, 3690, 179)}
TABLE1_CLAIM = api.claim_text(
    "dqn", "dqn2013-table1-{env}",
    "DQN: {paper:g} average total reward on {env}, a human-normalised score of {paper_norm:.0f}% (Table 1: human "
    "{human:g}, random {random:g})",
    "Mnih et al. 2013, Table 1",
    "per seed: our human-normalised score 100 x (agent - random) / (human - random), with the random policy "
    "measured in the same run and the human score from Table 1, is at least the paper's DQN's less {tol:g} "
    "points",
    strength=api.AS_STATED, quoted=False)


def human_normalised(score: float, random: float, human: float) -> float | None:
    """100 x (score - random) / (human - random); None where human and random coincide."""
    return None if human == random else 100.0 * (score - random) / (human - random)


def table1_decision(agent_means: list[float], random_means: list[float], game: str, tol: float = 10.0) -> list[float]:
    """Per seed: held when our human-normalised score (our random policy, Table 1's human) is at least the
    paper's DQN's (Table 1's own random and human) less `tol` points."""
    paper, _, human, rand = TABLE1_2013[game]
    want = human_normalised(paper, rand, human)
    return [float((h := human_normalised(a, r, human)) is not None and h >= want - tol)
            for a, r in zip(agent_means, random_means, strict=True)]


def beats_random(agent: list[float], rand: list[float]) -> bool:
    """The claim of a run: the agent's mean score exceeds the random policy's mean by more than two
    standard errors of the difference (Welch), and by at least 1 point. Scores: one per episode."""
    ma, sa = _mean_std(agent)
    mr, sr = _mean_std(rand)
    se = math.sqrt(sa**2 / len(agent) + sr**2 / len(rand))
    return (ma - mr) > max(2.0 * se, 1.0)


@SUITE.kind("quality",
            metrics=("agent_score", "best_episode_score", "random_score", "human_normalised_score", "claim_held", "train_seconds", "train_steps",))
def quality(cfg: DQNConfig, ctx: CaseContext) -> CaseOutput:
    seeds = ctx.quality_seeds(cfg.n_seeds)
    agent_means, random_means, claims, seconds, curves = [], [], [], [], {}
    best_episodes: list[float] = []
    per_seed = {}
    for seed in seeds:
        learner, c, secs = train(cfg, seed, ctx.torch_device, ctx, ctx.batch_size)
        rng = np.random.default_rng(10_000 + seed)
        eval_env = make_env(cfg, 10_000 + seed)  # a separately seeded env: no state carried over
        agent = evaluate(cfg, eval_env, lambda s, L=learner, g=rng: L.act(s, cfg.eval_eps, g), cfg.eval_episodes,
                         cfg.eval_max_steps)
        n_act = eval_env.n_actions
        rand = evaluate(cfg, eval_env, lambda s, g=rng, n=n_act: int(g.integers(n)), cfg.eval_episodes,
                        cfg.eval_max_steps)
        eval_env.close()
        agent_means.append(float(np.mean(agent)))
        best_episodes.append(float(np.max(agent)))
        random_means.append(float(np.mean(rand)))
        claims.append(float(beats_random(agent, rand)))
        seconds.append(secs)
        per_seed[str(seed)] = {"agent_scores": agent, "random_scores": rand}
        curves[f"dqn.seed{seed}.loss"] = api.curve("dqn", seed, c["loss"]["step"], loss=c["loss"]["loss"])
        curves[f"dqn.seed{seed}"] = api.curve("dqn", seed, c["returns"]["step"],
                                              **{"return": c["returns"]["return"]})
        ctx.seed_done(seed, {"agent_score": agent_means[-1], "random_score": random_means[-1], "claim_held": claims[-1]})
    unit = "score/episode"
    fields = dict(episodes=cfg.eval_episodes, eps=cfg.eval_eps, cap=cfg.eval_max_steps, frames=cfg.train_frames,
                  env=cfg.env)
    text = BEATS_RANDOM_CARTPOLE if cfg.env == "CartPole" else BEATS_RANDOM_ATARI
    rule = text.rule.format(**fields)
    m = api.Metrics()
    m.add("agent_score", unit, agent_means, note=f"mean over {cfg.eval_episodes} episodes per seed, eps={cfg.eval_eps}")
    m.add("best_episode_score", unit, best_episodes,
          note=f"the best of {cfg.eval_episodes} evaluation episodes per seed (Table 1's 'Best' rows)")
    m.add("random_score", unit, random_means, note="uniform random policy, same env and episode cap, same run")
    m.add("claim_held", "bool", claims, note=rule)
    m.add("train_seconds", "s", seconds, note=f"{cfg.train_frames} agent steps per seed, incl. acting")
    m.single("train_steps", "agent steps", cfg.train_frames, note=f"x {cfg.frame_skip} emulator frames",
             higher_is_better=False)
    claim_list = [text.make(claims, seeds, ctx.case.scale, **fields)]
    if ctx.case.scale == "paper" and cfg.network == "2013" and cfg.env in TABLE1_2013:
        paper, _, human, rand = TABLE1_2013[cfg.env]
        norm = [human_normalised(a, r, human) for a, r in zip(agent_means, random_means, strict=True)]
        m.add("human_normalised_score", "%", [x for x in norm if x is not None],
              note="100 x (agent - random) / (human - random): random measured here, human from Table 1")
        claim_list.append(TABLE1_CLAIM.make(table1_decision(agent_means, random_means, cfg.env), seeds,
                                            ctx.case.scale, env=cfg.env, paper=paper, human=human, random=rand,
                                            paper_norm=human_normalised(paper, rand, human), tol=10))
    return CaseOutput(metrics=m, artifacts={"curves": curves, "per_seed": per_seed},
                      info={"claims": claim_list,
                            "game": cfg.env, "network": cfg.network, "seeds": list(seeds),
                            "eval_protocol": f"eps-greedy eps={cfg.eval_eps}, {cfg.eval_episodes} episodes "
                                             f"capped at {cfg.eval_max_steps} agent steps"})
