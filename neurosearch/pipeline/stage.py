"""The one interface of a build stage: what it reads, what it writes, and how it runs.

A stage is a :class:`Stage`: its name (one of ``layout.STAGES``), the earlier stages whose files
it reads, and ``run(context) -> facts``, which writes its files into the index, lists them in the
manifest and returns what the manifest records about the run. What a stage writes is declared once,
in ``format/layout.py`` (``layout.files()``: each path with the stage that writes it);
:attr:`Stage.writes` reads it from there. The builder (``builder.py``) runs the stages in order and
refuses to run one whose inputs are not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from neurosearch.format import layout

if TYPE_CHECKING:
    from neurosearch.config import BuildConfig
    from neurosearch.corpus import CorpusSummary
    from neurosearch.format.manifest import Manifest
    from neurosearch.model.loading import LoadedModel, NeuronSite
    from neurosearch.progress import Reporter


@dataclass(frozen=True)
class StageContext:
    """What every stage is given: the index being built, the request, and the model on demand."""

    out: Path
    """The index directory."""
    manifest: Manifest
    config: BuildConfig
    reporter: Reporter
    model: Callable[[], tuple[LoadedModel, NeuronSite]]
    """Loads the model on first use (a stage that needs none never loads it) and returns it with its neuron site."""
    corpus: CorpusSummary
    position: dict[str, int]
    """How far the statistics pass got: documents done and checkpointed (the interrupt message)."""
    ray: str | None = None
    """Ray cluster address the statistics shards run on (None: in this process)."""


@dataclass(frozen=True)
class Stage:
    """One stage of the build."""

    name: str
    reads: tuple[str, ...]
    """The earlier stages whose files it reads (they must be done before it runs)."""
    run: Callable[[StageContext], dict[str, Any]]
    """Writes the stage's files into the index, lists them in the manifest; returns the stage's facts."""

    @property
    def writes(self) -> tuple[str, ...]:
        """The paths (patterns of ``layout.files()``) the stage writes."""
        return tuple(path for path, writer in layout.files() if writer == self.name)
