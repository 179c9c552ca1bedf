"""``neurosearch score``: explanation scores of every unit on held-out text."""

from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, RichReporter, open_index, print_json
from neurosearch.scores.config import ScoreConfig

GROUP_NAMES = {"neurons": "neurons", "tree": "tree nodes"}


def score(
    index: IndexOption = None,
    corpus: Annotated[Optional[str], typer.Option(help="Score on this corpus instead of the index's held-out documents (for an index that kept none; never the corpus it was built from).")] = None,
    text_field: Annotated[str, typer.Option(help="Field holding the text in jsonl/csv records of --corpus.")] = "text",
    max_tokens: Annotated[int, typer.Option(help="Counted tokens of held-out text to read.")] = ScoreConfig.max_tokens,
    top_tokens: Annotated[int, typer.Option(help="Tokens of each unit's explanation (its top tokens and their weights).")] = ScoreConfig.top_tokens,
    seed: Annotated[int, typer.Option(help="Seeds the random windows and the calibration.")] = ScoreConfig.seed,
    as_json: JsonOption = False,
) -> None:
    """Score how well every unit's explanation (its top tokens) predicts its activations on held-out text (simulation: correlation; calibration: another unit's explanation)."""
    from neurosearch.index.unit_scores import store_scores
    from neurosearch.scores.run import score_index

    config = ScoreConfig(max_tokens=max_tokens, top_tokens=top_tokens, seed=seed)
    opened = open_index(index)
    run = score_index(opened, config, corpus=corpus, text_field=text_field, reporter=RichReporter(quiet=as_json))
    data = run.to_json()
    path = store_scores(opened.state, data)
    if as_json:
        print_json({key: value for key, value in data.items() if key != "units"} | {"stored": str(path)})
        return
    from neurosearch.cli.render import console, score_table

    out = console()
    out.print(score_table(data))
    out.print(f"{run.about['tokens']:,} held-out tokens ({run.about['corpus']}, documents: {run.about['documents']}) "
              f"in {run.seconds:.0f} s; stored in {path}")
