"""Launchers: one per way of starting a case (in this process, a case process, torchrun ranks).

Each takes one frozen CaseSpec and returns one typed CaseResult (harness/launch/spec.py).
"""
