"""Kept for suites written against the old layout: the suite-facing helpers moved to
milestones.harness.ranks, the torchrun launcher to milestones.harness.launch.torchrun."""

from milestones.harness.launch.torchrun import (  # noqa: F401
    RENDEZVOUS_FLAGS,
    gather_record,
    lockstep_timing,
    rendezvous_args,
    torchrun_command,
    wants_torchrun,
)
from milestones.harness.ranks import active, data_parallel, fully_shard_model, register_gradients, world  # noqa: F401
