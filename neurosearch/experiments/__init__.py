"""Causal verification: ablation of neuron sets against random baselines, and the paper's evaluation."""
