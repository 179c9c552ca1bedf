"""``neurosearch score``: explanation scores of every unit on held-out text."""

from typing import Annotated, Optional

import typer

from neurosearch.cli.common import IndexOption, JsonOption, RichReporter, open_index, print_json
from neurosearch.scores.config import DetectionConfig, ScoreConfig

GROUP_NAMES = {"neurons": "neurons", "tree": "tree nodes"}


def score(
    index: IndexOption = None,
    corpus: Annotated[Optional[str], typer.Option(help="Score on this corpus instead of the index's held-out documents (for an index that kept none; never the corpus it was built from).")] = None,
    text_field: Annotated[str, typer.Option(help="Field holding the text in jsonl/csv records of --corpus.")] = "text",
    max_tokens: Annotated[int, typer.Option(help="Counted tokens of held-out text to read.")] = ScoreConfig.max_tokens,
    top_tokens: Annotated[int, typer.Option(help="Tokens of each unit's explanation (its top tokens and their weights).")] = ScoreConfig.top_tokens,
    seed: Annotated[int, typer.Option(help="Seeds the random windows and the calibration.")] = ScoreConfig.seed,
    detection: Annotated[bool, typer.Option("--detection", help="Also the detection score of a sample of units: can a language model, told the unit's theme, tell its strongest windows from random ones (AUC)?")] = False,
    lm: Annotated[str, typer.Option("--lm", help="Language model for --detection: local (Gemma 3 270M, the lm extra), a model directory or .gguf path, or a server URL#model.")] = "local",
    detection_units: Annotated[int, typer.Option(help="Units per group that --detection asks about.")] = 200,
    detection_windows: Annotated[int, typer.Option(help="--detection: each unit's strongest windows asked, and as many random ones.")] = DetectionConfig.top,
    detection_rule: Annotated[str, typer.Option(help="--detection: how a window is scored: surprisal (how much likelier the theme makes the text) or yes-no (the model answers whether the text matches the theme).")] = DetectionConfig.rule,
    as_json: JsonOption = False,
) -> None:
    """Score how well every unit's explanation (its top tokens) predicts its activations on held-out text (simulation: correlation; calibration: another unit's explanation)."""
    from neurosearch.index.unit_scores import store_scores
    from neurosearch.scores.run import score_index

    config = ScoreConfig(max_tokens=max_tokens, top_tokens=top_tokens, seed=seed)
    opened = open_index(index)
    reporter = RichReporter(quiet=as_json)
    if detection:
        from neurosearch.lm.config import LMSpec
        spec = LMSpec.parse(lm)  # checked before the slow work
        detect_config = DetectionConfig(units=detection_units, top=detection_windows, random=detection_windows,
                                        seed=seed, rule=detection_rule)
    run = score_index(opened, config, corpus=corpus, text_field=text_field, reporter=reporter)
    data = run.to_json()
    path = store_scores(opened.state, data)
    detected = None
    if detection:
        from neurosearch.lm import load_language_model
        from neurosearch.scores.run import detect

        detected = detect(opened, run, load_language_model(spec, reporter=reporter), detect_config, reporter=reporter)
    if as_json:
        print_json({key: value for key, value in data.items() if key != "units"} | {"stored": str(path)}
                   | ({"detection": {k: v for k, v in detected.items() if k not in ("units", "themes")}} if detected else {}))
        return
    from neurosearch.cli.render import console, detection_table, score_table

    out = console()
    out.print(score_table(data))
    if detected:
        out.print(detection_table(detected))
    out.print(f"{run.about['tokens']:,} held-out tokens ({run.about['corpus']}, documents: {run.about['documents']}) "
              f"in {run.seconds:.0f} s; stored in {path}")
