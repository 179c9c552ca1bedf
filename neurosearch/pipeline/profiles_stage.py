"""The build's profiles stage: which tokens are kept, their embedding space, and every method's
profiles (frequency filter, Eq. 2 smoothing, TF-IDF: ``profiles.py``) with each neuron's top tokens.

Paths come from ``format/layout.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurosearch.config import BuildConfig, to_dict
from neurosearch.corpus import training_documents
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout
from neurosearch.format.atomic import save_npy_atomic, write_json_atomic
from neurosearch.pipeline.stage import Stage, StageContext

FEW_KEPT_TOKENS = 2000
"""Below this many kept tokens the build suggests a lower ``--min-count`` (1,500 Yelp reviews keep
~600 tokens at the automatic 20, without weekday or colour names)."""


def run(context: StageContext) -> dict[str, Any]:
    """Write the stage's files into the index and list them; the stage's facts."""
    from neurosearch.pipeline.embeddings import nearest_neighbours, quantize_rows, unit
    from neurosearch.pipeline.profiles import choose_min_count, filter_tokens, method_profiles, raw_profiles, top_tokens
    from neurosearch.pipeline.stats import TokenStats
    from neurosearch.corpus import plain_backend

    out, manifest, build, reporter = context.out, context.manifest, context.config, context.reporter
    loaded = context.model()[0]
    config = build.profiles
    reporter.log("profiles: reading the statistics ...")
    stats = TokenStats.load(out / layout.STATS_DIR, mmap=True)  # only the kept rows are read
    tokenizer = loaded.tokenizer
    id_to_token = {index: token for token, index in tokenizer.get_vocab().items()}
    min_count = choose_min_count(config.min_count, stats.tokens)
    kept = filter_tokens(stats.token_ids, stats.token_counts, id_to_token, min_count)
    if len(kept.ids) < 10:
        raise NeurosearchError(
            f"only {len(kept.ids)} tokens occur at least {min_count} times; use a larger corpus or a lower `min_count`",
            option="min_count",
        )
    reporter.log(f"profiles: kept {len(kept.ids)} of {len(stats.token_ids)} seen tokens (count >= {min_count})")
    if len(kept.ids) < FEW_KEPT_TOKENS and min_count > 2:
        lower = [c for c in (10, 5, 3, 2) if c < min_count][:3]
        options = ", ".join(f"--min-count {c} keeps ~{int((stats.token_counts >= c).sum())}" for c in lower)
        reporter.log(f"profiles: few tokens kept for a concept search; a lower --min-count keeps more "
                     f"({options}; rarer tokens have noisier means)")
    raw = raw_profiles(stats.token_sums, stats.token_counts, kept.rows)
    del stats
    space = token_space(build, loaded, out)  # [V, D] unit rows for the whole vocabulary
    codes, scale = quantize_rows(space)
    save_npy_atomic(out / layout.TOKEN_SPACE, codes)
    save_npy_atomic(out / layout.TOKEN_SPACE_SCALE, scale)
    neighbours, similarity = nearest_neighbours(unit(space[kept.ids]), config.neighbours)
    save_npy_atomic(out / layout.NEIGHBOURS, neighbours)
    save_npy_atomic(out / layout.NEIGHBOUR_SIMILARITY, similarity)
    write_json_atomic(out / layout.TOKENS, kept.to_json())
    plain_backend(tokenizer).save(str(out / layout.TOKENIZER))
    for name in (layout.TOKEN_SPACE, layout.TOKEN_SPACE_SCALE, layout.NEIGHBOURS, layout.NEIGHBOUR_SIMILARITY,
                 layout.TOKENS, layout.TOKENIZER):
        manifest.record(out, name)
    advance = reporter.task("profiles (methods)", len(config.methods))
    for method in config.methods:
        profiles = method_profiles(raw, method, neighbours, similarity, config.smoothing_lambda)
        save_npy_atomic(out / layout.profiles_file(method), profiles)
        index, values = top_tokens(profiles, config.top_tokens)
        for relative, array in ((layout.neuron_top_tokens(method), index),
                                (layout.neuron_top_values(method), values.astype(np.float16))):
            save_npy_atomic(out / relative, array)
            manifest.record(out, relative)
        advance(1)
    reporter.finish("profiles (methods)")
    manifest.configs["profiles"] = to_dict(config)
    return {"min_count": min_count, "tokens_kept": int(len(kept.ids))}


def token_space(build: BuildConfig, loaded: Any, out: Path) -> np.ndarray:
    """Unit token vectors for the whole vocabulary from the configured source."""
    from neurosearch.pipeline.embeddings import fasttext_embeddings, file_embeddings, unit

    config = build.profiles
    table = loaded.encoder.get_input_embeddings().weight.detach().float().cpu().numpy()
    if config.embeddings == "model":
        return unit(table)
    vocab = sorted(loaded.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [token for token, _ in vocab]
    if config.embeddings == "fasttext":
        from neurosearch.corpus import plain_backend

        backend = plain_backend(loaded.tokenizer)
        pieces = (backend.encode(doc, add_special_tokens=False).tokens for doc in training_documents(build.corpus))
        return unit(fasttext_embeddings(pieces, tokens, work_dir=out))
    if not config.embeddings_path:
        raise NeurosearchError("embeddings 'file' needs embeddings_path (a .vec or .bin file)")
    return unit(file_embeddings(config.embeddings_path, tokens))


STAGE = Stage("profiles", reads=("stats",), run=run)
