"""The model: loading by alias, id or path, neuron sites and hooks, the fitted MLM head.

The only package that imports torch at module level (with experiments/, which runs it).
"""
