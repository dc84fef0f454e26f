"""asv benchmarks for every registered speed case, generated from the registry by milestones.harness.asv_bridge.

The scale comes from MILESTONES_SCALE (default smoke); see docs/asv-pytest-benchmark-nox.md.
"""

from milestones.harness.asv_bridge import make_benchmarks

globals().update(make_benchmarks())
