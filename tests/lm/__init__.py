"""Tests of the language-model layer (neurosearch/lm); a package, so its conftest is lm.conftest, not conftest."""
