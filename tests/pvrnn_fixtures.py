"""Shared tiny PV-RNN configuration for the CLI and workbench tests (trains in seconds)."""

TINY = """seed = 2
epochs = 15
lr = 0.01
beta = 0.001
checkpoint_every = 1000
[[layers]]
d = 6
z = 1
tau = 2.0
w = 0.01
[er]
window = 4
iterations = 3
lr = 0.1
horizon = 3
"""
