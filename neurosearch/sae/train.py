"""Train a TopK SAE on an activations directory (:mod:`~neurosearch.sae.activations`), resumably.

The recipe follows Gao et al. 2024, "Scaling and evaluating sparse autoencoders":

* decoder rows of unit norm: before each Adam step the gradient's component parallel to each row
  is removed, after it the rows are scaled back to unit norm; the encoder starts as the decoder's
  transpose and ``b_dec`` as the mean activation of the training rows;
* the loss is the batch's squared error over ``rows x`` the training rows' variance (per-row sum of
  squared deviations from their mean), i.e. the batch FVU against the data's variance;
* AuxK (on by default): the ``aux_k`` largest pre-activations among dead features (those that fired
  on none of the last ``dead_window_tokens`` rows, at most one epoch) reconstruct the main
  reconstruction's error, without bias; its squared error over the error's own squared norm is
  added with weight ``aux_coefficient``.

Speed on a CPU: only the encoder's pre-activations are a dense matrix product. The ``k`` selected
features are decoded with ``embedding_bag``, and the encoder's gradient reaches only the selected
(row, feature) pairs (:class:`_SelectedPreacts`), so a step costs about one dense product instead of five.

Data order: epoch ``e`` visits the rows in the permutation drawn by ``numpy.random.default_rng([seed, e])``,
in batches of ``batch_size`` (the last one shorter); nothing else is random after initialisation,
so a checkpoint needs no random state. Checkpoints (``checkpoints/step-NNNNNNNN/``:
``state.safetensors`` with the parameters, Adam's moments and step counts, the dead-feature counters
and the data mean; ``state.json`` with the step, epoch, seed and running totals, written last) are
written every ``checkpoint_seconds`` and when training ends; a rerun continues from the newest and
ends with the same weights as an uninterrupted run. Progress lines go to the log file.

At the end the SAE is measured (FVU on the held-out rows; per-feature mean activation and firing
frequency on the training rows, whose zeros give the dead share) and saved to ``sae/`` in the SAELens
layout (:mod:`~neurosearch.sae.model`) with ``feature_stats.safetensors``; the checkpoints are removed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from neurosearch.config import SAEConfig
from neurosearch.errors import NeurosearchError
from neurosearch.sae.activations import ActivationFiles
from neurosearch.sae.model import CONFIG_FILE, FeatureStats, SAEInfo, TopKSAE, load_sae, read_cfg

SAE_DIR = "sae"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step-"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
LOG_FILE = "train.log"
PARAMETERS = ("W_enc", "W_dec", "b_enc", "b_dec")




@dataclass(frozen=True)
class TrainResult:
    """Where a training run stands after :func:`train_sae` returns."""

    complete: bool
    steps: int
    total_steps: int
    directory: Path
    """The trained SAE (``out/sae``) when complete, else the checkpoint folder."""
    fvu: float | None = None
    dead_share: float | None = None
    train_seconds: float | None = None


class _SelectedPreacts(torch.autograd.Function):
    """The pre-activations ``inputs @ W_enc + b_enc`` at the given (row, feature) pairs, whose values
    the caller computed already; the backward pass touches only those pairs:
    d W_enc[:, f] = sum of g * inputs over the rows that selected f (one ``embedding_bag`` per
    feature), d b_enc[f] = sum of g, d inputs = sum over the row's pairs of g * W_enc[:, f]."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor,  # noqa: N803
                indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inputs, W_enc, indices)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        inputs, W_enc, indices = ctx.saved_tensors  # noqa: N806
        d_sae, k = W_enc.shape[1], indices.shape[1]
        flat, weights = indices.reshape(-1), grad.reshape(-1).contiguous()
        grad_inputs = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_inputs = F.embedding_bag(indices, W_enc.t().contiguous(), per_sample_weights=grad.contiguous(), mode="sum")
        if ctx.needs_input_grad[1]:
            order = torch.argsort(flat, stable=True)
            counts = torch.bincount(flat, minlength=d_sae)
            offsets = torch.cumsum(counts, 0) - counts
            per_feature = F.embedding_bag(order // k, inputs.detach(), offsets, per_sample_weights=weights[order], mode="sum")
            grad_w = per_feature.t().contiguous()
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(d_sae, dtype=grad.dtype).index_add_(0, flat, weights)
        return grad_inputs, grad_w, grad_b, None, None


DENSE_AUX_MAX = 3072
"""Up to this many dead features, AuxK multiplies dense matrices restricted to the dead features
(B x dead x d_in products, fast); above it, it gathers the selected ones (``embedding_bag``)."""


def aux_reconstruction(sae: TopKSAE, centered: torch.Tensor, pre: torch.Tensor, dead: torch.Tensor, k_aux: int,
                       dense: bool) -> torch.Tensor:
    """The AuxK reconstruction (no bias) from each row's ``k_aux`` largest pre-activations among
    the ``dead`` features, ReLU'd; ``pre``: the batch's pre-activations (no gradient; overwritten).
    ``dense`` picks the computation, not the result."""
    if dense:
        columns = torch.nonzero(dead).flatten()
        with torch.no_grad():
            chosen = torch.zeros(pre.shape[0], columns.numel(), dtype=torch.bool)
            chosen.scatter_(1, pre[:, columns].topk(k_aux, dim=1).indices, True)
        dead_pre = torch.addmm(sae.b_enc[columns], centered, sae.W_enc[:, columns])
        return (torch.relu(dead_pre) * chosen) @ sae.W_dec[columns]
    with torch.no_grad():
        values, indices = pre.masked_fill_(~dead, float("-inf")).topk(k_aux, dim=1)
    acts = torch.relu(_SelectedPreacts.apply(centered, sae.W_enc, sae.b_enc, indices, values))
    return F.embedding_bag(indices, sae.W_dec, per_sample_weights=acts, mode="sum")


@dataclass
class _StepFacts:
    sse: float
    aux: float
    fired: torch.Tensor


def train_step(sae: TopKSAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, data_var: float,
               dead: torch.Tensor, config: SAEConfig) -> _StepFacts:
    """One optimisation step on the rows ``x``; ``dead``: bool [d_sae], the features AuxK may use."""
    n = x.shape[0]
    centered = x - sae.b_dec
    with torch.no_grad():
        pre = torch.addmm(sae.b_enc, centered, sae.W_enc)
        top_values, top_indices = pre.topk(sae.k, dim=1)
    acts = torch.relu(_SelectedPreacts.apply(centered, sae.W_enc, sae.b_enc, top_indices, top_values))
    recon = F.embedding_bag(top_indices, sae.W_dec, per_sample_weights=acts, mode="sum") + sae.b_dec
    error = recon - x
    sse = error.pow(2).sum()
    loss = sse / (n * data_var)
    aux_value = 0.0
    n_dead = int(dead.sum())
    if config.aux_k and n_dead and config.aux_coefficient > 0:
        residual = (x - recon).detach()
        aux_recon = aux_reconstruction(sae, centered, pre, dead, min(config.aux_k, n_dead), dense=n_dead <= DENSE_AUX_MAX)
        aux = (aux_recon - residual).pow(2).sum() / residual.pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        loss = loss + config.aux_coefficient * aux
        aux_value = float(aux.detach())
    del pre
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        grad, rows = sae.W_dec.grad, sae.W_dec
        grad.sub_((grad * rows).sum(dim=1, keepdim=True) * rows)  # keep only what moves along the unit sphere
    optimizer.step()
    sae.normalize_decoder()
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    fired[top_indices[acts.detach() > 0]] = True
    return _StepFacts(sse=float(sse.detach()), aux=aux_value, fired=fired)


# -------------------------------------------------------------------------------------------- measuring


def data_moments(rows: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, float]:
    """(mean row, mean squared distance of a row from it), in float64."""
    total = np.zeros(rows.shape[1], dtype=np.float64)
    squares = 0.0
    for start in range(0, rows.shape[0], chunk):
        block = np.asarray(rows[start:start + chunk], dtype=np.float64)
        total += block.sum(axis=0)
        squares += float(np.einsum("ij,ij->", block, block))
    n = max(rows.shape[0], 1)
    mean = total / n
    return mean, max(squares / n - float(mean @ mean), 0.0)


@torch.no_grad()
def reconstruction_fvu(sae: TopKSAE, rows: np.ndarray, batch: int = 4096) -> float:
    """Fraction of variance unexplained on ``rows``: squared error over squared deviation from their mean."""
    sse, total, squares = 0.0, np.zeros(rows.shape[1], dtype=np.float64), 0.0
    for start in range(0, rows.shape[0], batch):
        x = torch.from_numpy(np.asarray(rows[start:start + batch], dtype=np.float32))
        sse += float((sae(x) - x).double().pow(2).sum())
        x64 = x.double()
        total += x64.sum(0).numpy()
        squares += float(x64.pow(2).sum())
    n = rows.shape[0]
    deviation = squares - float(total @ total) / max(n, 1)
    return sse / deviation if deviation > 0 else float("nan")


@torch.no_grad()
def feature_statistics(sae: TopKSAE, rows: np.ndarray, batch: int = 4096) -> FeatureStats:
    """Mean activation and firing frequency of every feature over ``rows``."""
    sums = torch.zeros(sae.d_sae, dtype=torch.float64)
    counts = torch.zeros(sae.d_sae, dtype=torch.float64)
    for start in range(0, rows.shape[0], batch):
        x = torch.from_numpy(np.asarray(rows[start:start + batch], dtype=np.float32))
        values, indices = sae.encode_topk(x)
        sums.index_add_(0, indices.reshape(-1), values.reshape(-1).double())
        counts.index_add_(0, indices.reshape(-1), (values.reshape(-1) > 0).double())
    n = max(rows.shape[0], 1)
    return FeatureStats(mean_activation=(sums / n).float(), frequency=(counts / n).float())


# ----------------------------------------------------------------------------------------- checkpoints


def _latest_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint whose ``state.json`` (written last) exists."""
    found = sorted(p for p in (root / CHECKPOINT_DIR).glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_JSON).is_file())
    return found[-1] if found else None


def _save_checkpoint(root: Path, sae: TopKSAE, optimizer: torch.optim.Optimizer, since_fired: torch.Tensor,
                     data_mean: torch.Tensor, state: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    from neurosearch.format.atomic import atomic_path, write_json_atomic

    folder = root / CHECKPOINT_DIR / f"{CHECKPOINT_PREFIX}{state['step']:08d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tensors = {name: getattr(sae, name).detach().contiguous() for name in PARAMETERS}
    for name in PARAMETERS:
        for key, value in optimizer.state.get(getattr(sae, name), {}).items():
            tensors[f"adam.{name}.{key}"] = value.detach().reshape(-1).contiguous() if key == "step" else value.contiguous()
    tensors["since_fired"] = since_fired.contiguous()
    tensors["data_mean"] = data_mean.contiguous()
    with atomic_path(folder / STATE_TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(folder / STATE_JSON, state)
    for older in (root / CHECKPOINT_DIR).glob(f"{CHECKPOINT_PREFIX}*"):
        if older != folder:
            shutil.rmtree(older, ignore_errors=True)
    return folder


def _load_checkpoint(folder: Path, sae: TopKSAE, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    state = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / STATE_TENSORS))
    with torch.no_grad():
        for name in PARAMETERS:
            getattr(sae, name).copy_(tensors[name])
    adam: dict[int, dict[str, torch.Tensor]] = {}
    for number, name in enumerate(PARAMETERS):
        moments = {key.rsplit(".", 1)[1]: value for key, value in tensors.items() if key.startswith(f"adam.{name}.")}
        if moments:
            moments["step"] = moments["step"].reshape(())
            adam[number] = moments
    optimizer.load_state_dict({"state": adam, "param_groups": optimizer.state_dict()["param_groups"]})
    return state, tensors


# -------------------------------------------------------------------------------------------- training


class _Log:
    """Progress lines appended to the log file (and handed to ``echo``)."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None):
        self.path, self.echo = path, echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(stamped + "\n")
        if self.echo is not None:
            self.echo(stamped)


def finished_sae(out: str | Path, identity: dict[str, Any]) -> TopKSAE | None:
    """The trained SAE in ``out/sae`` when it was trained under ``identity``, else None."""
    directory = Path(out) / SAE_DIR
    if not (directory / CONFIG_FILE).is_file():
        return None
    if read_cfg(directory).get("neurosearch", {}).get("training", {}).get("identity") != identity:
        return None
    return load_sae(directory)


def train_sae(activations: str | Path | ActivationFiles, out: str | Path, config: SAEConfig = SAEConfig(), *,
              echo: Callable[[str], None] | None = None, stop_after_steps: int | None = None) -> TrainResult:
    """Train (or go on training) an SAE on the activations in ``activations``; see the module's doc.

    ``out`` receives ``train.log``, ``checkpoints/`` while training, and ``sae/`` at the end.
    ``echo`` gets every log line too. ``stop_after_steps``: write a checkpoint and return after that
    many steps of this call (an interruption, for tests). A rerun after the end returns the result.
    """
    files = activations if isinstance(activations, ActivationFiles) else ActivationFiles.open(activations)
    root = Path(out)
    log = _Log(root / LOG_FILE, echo)
    train_rows = files.train
    n, d_in = train_rows.shape
    d_sae = config.features(d_in)
    if config.k > d_sae:
        raise NeurosearchError(f"k {config.k} exceeds the number of features {d_sae}")
    identity = {"config": config.identity(), "activations": files.record["identity"], "rows": int(n), "d_in": int(d_in)}
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    done = finished_sae(root, identity)
    if done is not None:
        return TrainResult(True, total_steps, total_steps, root / SAE_DIR, done.info.fvu, done.info.dead_share,
                           done.info.train_seconds)
    dead_window = min(config.dead_window_tokens, n)
    sae = TopKSAE.initialised(d_in, d_sae, config.k, seed=config.seed)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
    checkpoint = _latest_checkpoint(root)
    if checkpoint is not None:
        state, tensors = _load_checkpoint(checkpoint, sae, optimizer)
        if state.get("identity") != identity:
            raise NeurosearchError(f"the checkpoint {checkpoint} is of another training (settings or activations); "
                                   "remove it or choose another folder")
        since_fired, data_mean = tensors["since_fired"], tensors["data_mean"]
        log(f"train: resuming at step {state['step']:,} of {total_steps:,}")
    else:
        started = time.time()
        mean, variance = data_moments(train_rows)
        data_mean = torch.from_numpy(mean)
        with torch.no_grad():
            sae.b_dec.copy_(data_mean.float())
        since_fired = torch.zeros(d_sae, dtype=torch.int64)
        state = {"identity": identity, "step": 0, "tokens": 0, "seconds": 0.0, "seed": config.seed,
                 "data_var": variance, "rng": "epoch e: numpy.random.default_rng([seed, e]).permutation(rows)"}
        log(f"train: {n:,} rows of {d_in} -> {d_sae:,} features, k {config.k}, batch {config.batch_size}, "
            f"{config.epochs} epochs = {total_steps:,} steps; data variance {variance:.4g} ({time.time() - started:.1f} s)")
    data_var = float(state["data_var"])
    step = int(state["step"])
    run_started = last_checkpoint = last_log = time.time()
    seconds_before = float(state["seconds"])
    window = {"sse": 0.0, "aux": 0.0, "rows": 0, "steps": 0}
    order_epoch, order = -1, np.zeros(0, dtype=np.int64)
    steps_here = 0

    def snapshot() -> None:
        state.update(step=step, epoch=step // steps_per_epoch, seconds=round(seconds_before + time.time() - run_started, 2))
        _save_checkpoint(root, sae, optimizer, since_fired, data_mean, state)

    while step < total_steps:
        epoch, number = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = np.random.default_rng([config.seed, epoch]).permutation(n), epoch
        rows = np.sort(order[number * config.batch_size:(number + 1) * config.batch_size])
        x = torch.from_numpy(np.asarray(train_rows[rows], dtype=np.float32))
        facts = train_step(sae, optimizer, x, data_var, since_fired >= dead_window, config)
        since_fired += x.shape[0]
        since_fired[facts.fired] = 0
        step += 1
        steps_here += 1
        state["tokens"] = int(state["tokens"]) + x.shape[0]
        window["sse"] += facts.sse
        window["aux"] += facts.aux
        window["rows"] += x.shape[0]
        window["steps"] += 1
        now = time.time()
        if now - last_log >= config.log_seconds or step == total_steps or number + 1 == steps_per_epoch:
            rate = window["rows"] / max(now - last_log, 1e-9)
            left = (total_steps - step) * (now - last_log) / max(window["steps"], 1)
            fvu = window["sse"] / max(window["rows"] * data_var, 1e-30)
            aux = window["aux"] / max(window["steps"], 1)
            log(f"train: step {step:,}/{total_steps:,} epoch {step / steps_per_epoch:.2f} tokens {state['tokens']:,} "
                f"loss {fvu + config.aux_coefficient * aux:.4f} fvu {fvu:.4f} aux {aux:.4f} "
                f"dead {float((since_fired >= dead_window).float().mean()):.4f} tokens/s {rate:,.0f} "
                f"elapsed {seconds_before + now - run_started:,.0f} s, about {left / 60:,.1f} min left")
            window = {"sse": 0.0, "aux": 0.0, "rows": 0, "steps": 0}
            last_log = now
        if step < total_steps and (now - last_checkpoint >= config.checkpoint_seconds
                                   or (stop_after_steps is not None and steps_here >= stop_after_steps)):
            snapshot()
            last_checkpoint = time.time()
            if stop_after_steps is not None and steps_here >= stop_after_steps:
                log(f"train: stopped after step {step:,} (checkpoint written)")
                return TrainResult(False, step, total_steps, root / CHECKPOINT_DIR)
    latest = _latest_checkpoint(root)
    if latest is None or json.loads((latest / STATE_JSON).read_text(encoding="utf-8"))["step"] != step:
        snapshot()  # the measurements below take minutes: an interruption there does not retrain
    train_seconds = round(seconds_before + time.time() - run_started, 2)
    return _finish(root, sae, files, config, identity, train_seconds, log, total_steps)


def _finish(root: Path, sae: TopKSAE, files: ActivationFiles, config: SAEConfig, identity: dict[str, Any],
            train_seconds: float, log: Callable[[str], None], total_steps: int) -> TrainResult:
    """Measure the trained SAE, save it to ``root/sae`` and remove the checkpoints."""
    started = time.time()
    sae.eval()
    fvu = reconstruction_fvu(sae, files.heldout, config.eval_batch)
    stats = feature_statistics(sae, files.train, config.eval_batch)
    dead_share = float((stats.frequency == 0).float().mean())
    record = files.record
    corpus = record["identity"].get("corpus", {})
    sae.info = SAEInfo(model_name=record.get("model_name", ""), hook_name=record.get("hook_name", ""),
                       site=record["identity"].get("site", ""), layer=record["identity"].get("layer"),
                       context_size=corpus.get("window"), dataset_path=corpus.get("source", ""),
                       training_tokens=int(files.train.shape[0]), heldout_tokens=int(files.heldout.shape[0]),
                       fvu=fvu, dead_share=dead_share, train_seconds=train_seconds,
                       training={"identity": identity, "steps": total_steps, "config": asdict(config),
                                 "eval_seconds": round(time.time() - started, 2)})
    directory = sae.save(root / SAE_DIR)
    stats.save(directory)
    shutil.rmtree(root / CHECKPOINT_DIR, ignore_errors=True)
    log(f"train: done: held-out FVU {fvu:.4f}, dead share {dead_share:.4f}, {train_seconds:,.0f} s training, "
        f"{time.time() - started:,.0f} s measuring; saved {directory}")
    return TrainResult(True, total_steps, total_steps, directory, fvu, dead_share, train_seconds)
