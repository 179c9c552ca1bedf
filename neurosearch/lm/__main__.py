"""``python -m neurosearch.lm [SPEC]``: load a language model (progress on the terminal), say how
long it took, and score or continue a prompt -- a developer's check of a model before the
commands use it. SPEC: ``local`` (default), a model directory or ``.gguf`` file, or
``http://host:port/v1#model``.

    python -m neurosearch.lm --prompt "Examples of weekdays:" --candidates " Monday, carrot"
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurosearch.lm", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=None, help="local (default), a path, or http://host/v1#model")
    parser.add_argument("--sha256", help="the expected sha256 of a .gguf path")
    parser.add_argument("--prompt", default="Examples of fruits: apple, banana, cherry\nExamples of weekdays:")
    parser.add_argument("--candidates", default=" monday, carrot, Monday",
                        help="comma-separated continuations, each scored by its first token and by all of them")
    parser.add_argument("--generate", type=int, default=12, metavar="TOKENS", help="greedy tokens to generate (0: none)")
    args = parser.parse_args(argv)

    from neurosearch.cli.common import RichReporter, error_line
    from neurosearch.errors import NeurosearchError
    from neurosearch.lm.config import LMSpec
    from neurosearch.lm.spec import load_language_model

    try:
        spec = LMSpec.parse(args.spec, **({"sha256": args.sha256} if args.sha256 else {}))
        started = time.perf_counter()
        with RichReporter() as reporter:
            lm = load_language_model(spec, reporter=reporter)
        loaded = time.perf_counter() - started
        candidates = [c for c in args.candidates.split(",") if c.strip()]
        started = time.perf_counter()
        first = lm.next_token_logprobs(args.prompt, candidates)
        whole = lm.continuation_logprobs(args.prompt, candidates)
        scored = time.perf_counter() - started
        report = {"model": lm.identity.key, "load_seconds": round(loaded, 2), "score_seconds": round(scored, 2),
                  "scores": [{"candidate": f.text, "first_token": round(f.logprob, 3), "all_tokens": round(w.logprob, 3),
                              "tokens": f.tokens, "exact": f.exact} for f, w in zip(first, whole)]}
        if args.generate > 0:
            started = time.perf_counter()
            report["generated"] = lm.generate(args.prompt, args.generate, stop=["\n"])
            report["generate_seconds"] = round(time.perf_counter() - started, 2)
        lm.close()
    except NeurosearchError as exc:
        error_line(str(exc))
        return 1
    sys.stdout.write(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
