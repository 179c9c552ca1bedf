"""Where the default index is: installed with the package, or at the top of a source checkout.

A wheel carries the repository's ``index/default/`` as package data in ``neurosearch/_shipped/default``
(``setup.py`` copies it at build time, checking every file against the manifest); an editable
install or a plain checkout reads ``index/default/`` beside the package. ``$NEUROSEARCH_INDEX``
and ``--index`` override both (``neurosearch.cli.common``). Standard library only: ``find`` imports
this on every start.
"""

from __future__ import annotations

from pathlib import Path

from neurosearch.format.layout import MANIFEST

PACKAGE_DIR = "_shipped"
"""Folder of the installed package that holds the shipped indexes (``_shipped/default``)."""
PACKAGED = Path(__file__).resolve().parents[1] / PACKAGE_DIR / "default"
CHECKOUT = Path(__file__).resolve().parents[2] / "index" / "default"


def shipped_index() -> Path:
    """The default index that came with this neurosearch: the installed copy, else the checkout's."""
    for candidate in (PACKAGED, CHECKOUT):
        if (candidate / MANIFEST).is_file():
            return candidate
    return PACKAGED  # neither: loading it names the installed location as missing
