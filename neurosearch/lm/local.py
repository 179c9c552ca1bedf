"""The local backend: a causal language model run by transformers on this machine's CPU (or GPU).

Where the weights come from (``files.py`` checks them first):

* the default, Gemma 3 270M, from the ``lm`` extra's GGUF;
* a GGUF file the user names;
* a transformers model directory the user names (safetensors only).

transformers reads a GGUF by dequantising it to float32, which takes about a minute for Gemma 3
270M on a 2-core CPU (most of it converting the 262k-token tokenizer). The result is saved once as
a transformers directory (safetensors, config, tokenizer) in the cache folder, named after the
GGUF's sha256, so later loads read that copy and take seconds; delete the folder to convert again.

Nothing is fetched from the Hugging Face hub (``HF_HUB_OFFLINE=1``, ``local_files_only=True``)
and no code from a model directory or GGUF runs (``trust_remote_code=False``; only architectures
transformers ships load).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from neurosearch.lm.base import Identified, LMError, ModelIdentity, Scored, check_generate_args, cut_at_stop
from neurosearch.lm.files import (
    GEMMA_DISTRIBUTION,
    GEMMA_NAME,
    GEMMA_PACKAGE,
    GEMMA_SHA256,
    INSTALL_LM,
    assemble_default_gguf,
    check_gguf,
    check_model_dir,
    lm_cache_dir,
    model_files,
    require_extra,
)
from neurosearch.progress import Reporter, SilentReporter

if TYPE_CHECKING:
    from neurosearch.lm.config import LMSpec

CONVERTED_STAMP = "neurosearch-lm.json"
"""Written last into a converted copy: which GGUF (sha256) it came from, and how."""


class TransformersLM(Identified):
    """A transformers causal LM and its tokenizer behind the :class:`LanguageModel` interface."""

    def __init__(self, model: Any, tokenizer: Any, identity: ModelIdentity, batch_size: int = 16) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._identity = identity
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        probe = tokenizer("x", add_special_tokens=True)["input_ids"]
        bos = tokenizer.bos_token_id
        self._bos: list[int] = [bos] if bos is not None and probe[:1] == [bos] else []
        """Prepended to every prompt when the tokenizer adds it by itself (Gemma, Llama; not GPT-2)."""
        self._fallback_bos = bos
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = eos if isinstance(eos, (list, tuple)) else [eos]
        self._eos = {int(e) for e in [*eos, tokenizer.eos_token_id] if e is not None}

    def close(self) -> None:
        pass

    # tokens
    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        backend = getattr(self.tokenizer, "backend_tokenizer", None)  # a fast tokenizer's own: 40% quicker
        if backend is not None:
            return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self._bos + self._encode([prompt])[0]
        if not ids:
            if self._fallback_bos is None:
                raise LMError(f"{self.name}: an empty prompt needs a tokenizer with a beginning-of-text token")
            ids = [self._fallback_bos]
        return ids

    def continuation_tokens(self, prompt: str, candidates: Sequence[str]) -> list[list[int]]:
        """Each candidate's tokens after ``prompt`` (the rule in ``base.py``)."""
        prompt_ids = self._encode([prompt])[0]
        n = len(prompt_ids)
        together = self._encode([prompt + c for c in candidates])
        alone = self._encode([c for c, ids in zip(candidates, together) if ids[:n] != prompt_ids or len(ids) <= n])
        found: list[list[int]] = []
        for candidate, ids in zip(candidates, together):
            tokens = ids[n:] if ids[:n] == prompt_ids and len(ids) > n else alone.pop(0)
            if not tokens:
                raise LMError(f"{self.name}: candidate {candidate!r} has no tokens")
            found.append(tokens)
        return found

    # scoring
    def _logprobs(self, rows: list[list[int]], keep: int) -> Any:
        """log-softmax over the vocabulary at the last ``keep`` positions of each row of a
        right-padded batch (a model that can, computes logits for those positions only: the
        output layer is most of a small model's work, 262k x 640 for Gemma 3 270M)."""
        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        keep = min(keep, width)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, **self._keep_kwargs(keep)).logits[:, -keep:]
            return torch.log_softmax(logits.float(), dim=-1)

    def _keep_kwargs(self, keep: int) -> dict[str, int]:
        if not hasattr(self, "_keep_name"):
            import inspect

            names = inspect.signature(self.model.forward).parameters
            self._keep_name = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in names), None)
        return {self._keep_name: keep} if self._keep_name else {}

    def next_token_distribution(self, prompt: str) -> Any:
        """log-probabilities of every vocabulary token after ``prompt`` (a 1-D float32 tensor)."""
        return self._logprobs([self._prompt_ids(prompt)], 1)[0, -1]

    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> list[Scored]:
        candidates = list(candidates)
        if not candidates:
            return []
        tokens = self.continuation_tokens(prompt, candidates)
        distribution = self.next_token_distribution(prompt).tolist()
        return [Scored(c, distribution[t[0]], len(t)) for c, t in zip(candidates, tokens)]

    def _last_logprobs(self, prompts: list[str]) -> Any:
        """log-softmax of the next token after each prompt (a float32 tensor [prompts, vocabulary]),
        ``batch_size`` prompts per forward pass: the output layer runs at each prompt's last token only."""
        import torch

        cap = getattr(self.model.config, "final_logit_softcapping", None)
        rows = [self._prompt_ids(p) for p in prompts]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        with torch.inference_mode():
            hidden = self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            last = hidden[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])]
            logits = self.model.get_output_embeddings()(last).float()
            if cap is not None:
                logits = torch.tanh(logits / cap) * cap
            return torch.log_softmax(logits, dim=-1)

    def next_token_logprobs_many(self, prompts: Sequence[str], candidates: Sequence[str]) -> list[list[Scored]]:
        """:meth:`next_token_logprobs` after each of several prompts, ``batch_size`` prompts per forward
        pass: the output layer runs at each prompt's last token only."""
        prompts, candidates = list(prompts), list(candidates)
        found: list[list[Scored]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start:start + self.batch_size]
            for prompt, row in zip(batch, self._last_logprobs(batch)):
                tokens = self.continuation_tokens(prompt, candidates)
                found.append([Scored(c, float(row[t[0]]), len(t)) for c, t in zip(candidates, tokens)])
        return found

    def first_token_table(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[Any, Any]:
        """:meth:`LanguageModel.first_token_table`: candidates tokenised once (after the first prompt),
        ``batch_size`` prompts per forward pass, one column gather per batch."""
        import numpy as np
        import torch

        prompts, candidates = list(prompts), list(candidates)
        table = np.zeros((len(prompts), len(candidates)), dtype=np.float32)
        tokens = self.continuation_tokens(prompts[0], candidates) if prompts and candidates else [[0]] * len(candidates)
        first = torch.tensor([t[0] for t in tokens], dtype=torch.long, device=self.device)
        for start in range(0, len(prompts) if candidates else 0, self.batch_size):
            batch = prompts[start:start + self.batch_size]
            table[start:start + len(batch)] = self._last_logprobs(batch)[:, first].cpu().numpy()
        return table, np.asarray([len(t) for t in tokens], dtype=np.int32)

    def continuation_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[Scored]:
        continuations = list(continuations)
        if not continuations:
            return []
        head = self._prompt_ids(prompt)
        tokens = self.continuation_tokens(prompt, continuations)
        scores: list[Scored] = []
        for start in range(0, len(tokens), self.batch_size):
            batch = tokens[start:start + self.batch_size]
            longest = max(len(t) for t in batch)
            logprobs = self._logprobs([head + t for t in batch], longest + 1)  # from the prompt's last position
            for row, (text, t) in enumerate(zip(continuations[start:start + self.batch_size], batch)):
                total = sum(float(logprobs[row, i, token]) for i, token in enumerate(t))
                scores.append(Scored(text, total, len(t)))
        return scores

    def continuation_logprob(self, prompt: str, continuation: str) -> float:
        return self.continuation_logprobs(prompt, [continuation])[0].logprob

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ()) -> str:
        import torch
        import transformers

        check_generate_args(max_tokens, stop)
        ids = torch.tensor([self._prompt_ids(prompt)], device=self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self._eos, default=0)
        config = transformers.GenerationConfig(max_new_tokens=max_tokens, do_sample=False, num_beams=1,
                                               eos_token_id=sorted(self._eos) or None, pad_token_id=pad)
        start = ids.shape[1]
        tokenizer = self.tokenizer
        stops = [s for s in stop if s]

        class StopStrings(transformers.StoppingCriteria):  # transformers' stop_strings needs a tidy vocabulary
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                text = tokenizer.decode(input_ids[0, start:], skip_special_tokens=True)
                return torch.tensor([any(s in text for s in stops)], device=input_ids.device)

        criteria = transformers.StoppingCriteriaList([StopStrings()] if stops else [])
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                      stopping_criteria=criteria)
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return cut_at_stop(text, stop)[0]


def local_identity(spec: LMSpec, reporter: Reporter | None = None) -> ModelIdentity:
    """Which model ``spec`` names, without loading it (standard library: no torch): the default
    Gemma's pinned identity, or a model directory's or GGUF's, its files checked (``files.py``)
    and hashed (remembered in the cache folder's ``digests.json``)."""
    reporter = reporter or SilentReporter()
    if spec.path is None:
        return ModelIdentity("local", GEMMA_NAME, GEMMA_SHA256, GEMMA_DISTRIBUTION)
    cache = lm_cache_dir(spec.cache_dir)
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise LMError(f"language model {path} does not exist", option="path")
    if path.is_dir():
        checking = f"sha256 of {path.name}"
        advance = reporter.task(checking, sum(f.stat().st_size for f in model_files(path)))
        digest = check_model_dir(path, cache, advance)
        reporter.finish(checking)
        return ModelIdentity("local", path.resolve().name, digest, str(path.resolve()))
    if path.suffix.lower() != ".gguf":
        raise LMError(f"{path} is neither a model directory nor a .gguf file", option="path")
    advance = reporter.task(f"sha256 of {path.name}", path.stat().st_size)
    digest = check_gguf(path, spec.sha256, cache, advance)
    reporter.finish(f"sha256 of {path.name}")
    return ModelIdentity("local", path.stem, digest, str(path.resolve()))


def load_local(spec: LMSpec, reporter: Reporter | None = None) -> TransformersLM:
    """The local model ``spec`` names (its ``path``; None: the default Gemma), checked, converted
    once when it is a GGUF, and loaded."""
    reporter = reporter or SilentReporter()
    cache = lm_cache_dir(spec.cache_dir)
    if spec.path is None:
        require_extra([GEMMA_PACKAGE], "the default local language model (Gemma 3 270M)")
    identity = local_identity(spec, reporter)
    if spec.path is None:
        converted = cache / f"{GEMMA_NAME}-{GEMMA_SHA256[:16]}"
        if not _complete(converted, GEMMA_SHA256):
            def source() -> Path:
                return assemble_default_gguf(cache / "assembling" / f"{GEMMA_NAME}.gguf")
            return _convert_and_load(source, converted, identity, spec, reporter, remove_source=True)
        return _load_directory(converted, identity, spec, reporter)
    path = Path(spec.path).expanduser()
    if path.is_dir():
        return _load_directory(path, identity, spec, reporter)
    assert identity.digest is not None
    converted = cache / f"{_slug(path.stem)}-{identity.digest[:16]}"
    if not _complete(converted, identity.digest):
        return _convert_and_load(lambda: path, converted, identity, spec, reporter, remove_source=False)
    return _load_directory(converted, identity, spec, reporter)


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "model"


def _complete(converted: Path, digest: str) -> bool:
    """True when ``converted`` is a finished conversion of the GGUF with ``digest``."""
    try:
        stamp = json.loads((converted / CONVERTED_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("gguf_sha256") == digest


def _offline() -> None:
    """Before transformers is imported: never reach the hub, and keep its own bars quiet."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _dtype_kwarg(transformers: Any, dtype: Any) -> dict[str, Any]:
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


class _Quiet:
    """transformers' own progress bars (its logging's, and the bare tqdm of its GGUF reader) and
    info messages off while we show ours."""

    def __enter__(self) -> None:
        import functools
        import sys

        from transformers.utils import logging

        self.gguf = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
        if self.gguf is None and importlib.util.find_spec("gguf") is not None:
            try:
                import transformers.modeling_gguf_pytorch_utils as gguf_utils
            except ImportError:
                gguf_utils = None
            self.gguf = gguf_utils
        self.tqdm = getattr(self.gguf, "tqdm", None)
        if self.tqdm is not None:
            self.gguf.tqdm = functools.partial(self.tqdm, disable=True)
        self.bars = logging.is_progress_bar_enabled()
        self.level = logging.get_verbosity()
        logging.disable_progress_bar()
        logging.set_verbosity_error()

    def __exit__(self, *exc: Any) -> None:
        from transformers.utils import logging

        if self.tqdm is not None:
            self.gguf.tqdm = self.tqdm
        if self.bars:
            logging.enable_progress_bar()
        logging.set_verbosity(self.level)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _load_directory(directory: Path, identity: ModelIdentity, spec: LMSpec, reporter: Reporter) -> TransformersLM:
    _offline()
    import torch
    import transformers

    description = f"loading {identity.name}"
    advance = reporter.task(description, 2)
    common = dict(local_files_only=True, trust_remote_code=False)
    with _Quiet():
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory, **common)
            advance(1)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                directory, use_safetensors=True, **common, **_dtype_kwarg(transformers, torch.float32))
        except (OSError, ValueError, KeyError) as exc:
            raise LMError(f"cannot load the language model in {directory}: {_one_line(exc)}", option="path") from None
    advance(1)
    reporter.finish(description)
    return TransformersLM(model, tokenizer, identity, spec.batch_size)


def _convert_and_load(source: Callable[[], Path], converted: Path, identity: ModelIdentity, spec: LMSpec,
                      reporter: Reporter, *, remove_source: bool) -> TransformersLM:
    """Read the GGUF (dequantised to float32), save the transformers copy at ``converted``, and
    return the model read from the GGUF."""
    require_extra(["gguf", "accelerate"], f"reading the GGUF of {identity.name}")  # transformers needs both
    _offline()
    import torch
    import transformers

    description = f"converting {identity.name} (once)"
    advance = reporter.task(description, 4)
    started = time.perf_counter()
    gguf = source()
    advance(1)
    common = dict(local_files_only=True, trust_remote_code=False, gguf_file=gguf.name)
    try:
        with _Quiet():
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, **common)
                advance(1)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    gguf.parent, **common, **_dtype_kwarg(transformers, torch.float32))
            except Exception as exc:  # a damaged or unsupported GGUF fails in many ways inside transformers
                raise LMError(f"transformers cannot read {gguf.name}: {_one_line(exc)}", option="path") from None
            advance(1)
            _plain(model)
            _save_converted(model, tokenizer, converted, identity, time.perf_counter() - started,
                            transformers.__version__)
    finally:
        if remove_source:  # the joined chunks: the converted copy replaces them
            gguf.unlink(missing_ok=True)
    advance(1)
    reporter.finish(description)
    return TransformersLM(model, tokenizer, identity, spec.batch_size)


def _plain(model: Any) -> None:
    """Forget that the weights came from a GGUF: they are float32 tensors already, and the copy
    must load as a plain model (transformers refuses to save a model it thinks is quantised)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    elif getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def _save_converted(model: Any, tokenizer: Any, converted: Path, identity: ModelIdentity, seconds: float,
                    version: str) -> None:
    """Save the copy into a temporary folder and rename it into place (a concurrent or interrupted
    conversion never leaves a half copy that looks finished). A cache that cannot be written is no
    error: the next load converts again."""
    import secrets

    tmp = converted.with_name(f".{converted.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        stamp = {"gguf_sha256": identity.digest, "name": identity.name, "source": identity.source,
                 "transformers": version, "dtype": "float32", "convert_seconds": round(seconds, 1)}
        (tmp / CONVERTED_STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
        if converted.exists():
            shutil.rmtree(converted)  # an unfinished copy (no stamp) or one of another GGUF
        os.replace(tmp, converted)
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["TransformersLM", "load_local", "local_identity", "INSTALL_LM"]
