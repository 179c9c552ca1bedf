"""TopK sparse autoencoders (SAEs) over one layer of a neuron site: their features are units beside neurons.

* :mod:`~neurosearch.sae.model` -- the TopK SAE, saved and loaded in the SAELens file layout;
* :mod:`~neurosearch.sae.ablation` -- removing some features' contribution from activations;
* :mod:`~neurosearch.sae.activations` -- one layer's activations over a corpus, on disk, resumable;
* :mod:`~neurosearch.sae.train` -- training from such a file, checkpointed and resumable.

Nothing is imported here, so that importing one module does not import torch through another.
"""
