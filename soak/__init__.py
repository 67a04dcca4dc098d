"""Fault soaks: worker crashes, partner faults, a database restart and sustained API load, measured.

Run them with `python soak/run.py` (see its --help); tests/soak runs each at a small scale.
"""
