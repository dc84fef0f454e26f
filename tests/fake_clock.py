"""A fake clock for the timing tests: each call of `work` takes 1 ms, 2 ms, 3 ms, ... of fake time."""

from __future__ import annotations


class Clock:
    """Each call of `work` takes 1 ms, 2 ms, 3 ms, ... of fake time."""

    START = 10**12  # a clock never starts at 0: elapsed times must be differences

    def __init__(self):
        self.t = self.START  # ns
        self.calls = 0

    def reset(self):
        self.t, self.calls = self.START, 0

    def ns(self):
        return self.t

    def s(self):
        return self.t / 1e9

    def work(self):
        self.calls += 1
        self.t += self.calls * 1_000_000
