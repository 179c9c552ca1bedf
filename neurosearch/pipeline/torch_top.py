"""Top-k activating occurrences with torch: the statistics' path without numba, and on a GPU.

Two ways to merge a batch into each neuron's top-k list ([width, k] values, descending, and
[width, k, 3] references), both keeping the older entry first on ties (a stable sort of the old
list followed by the new candidates):

- :func:`update_top_screened` (CPU): only values above the column's current k-th best are read
  again; block maxima say which (row block, column) pairs can hold one. After the first batches
  it touches few elements, but it synchronises with the host several times per call.
- :func:`update_top_dense` (any device, the CUDA path): a dense ``topk`` over the batch, one
  concatenation and one stable sort, with no host synchronisation -- cheap on a GPU, where a
  host round trip costs more than the arithmetic. Among exactly equal values inside one batch
  ``topk`` may pick any, so references can differ from the other paths only between ties.
"""

from __future__ import annotations

from typing import Any

import torch

SCREEN_BLOCK = 256


def _screen(x: torch.Tensor, threshold: torch.Tensor, valid_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, cols) of valid entries above their column's threshold, grouped by column, rows
    ascending; None when too many (row block, column) pairs qualify to be worth it."""
    n, width = x.shape
    block = SCREEN_BLOCK
    full = (n // block) * block
    parts = [x[:full].view(-1, block, width).amax(dim=1)] if full else []
    if full < n:
        parts.append(x[full:].amax(dim=0, keepdim=True))
    block_max = torch.cat(parts) if len(parts) > 1 else parts[0]
    threshold = threshold.to(x.dtype)
    blocks, cols = torch.nonzero(block_max > threshold, as_tuple=True)
    if blocks.numel() * block * 4 > n * width:
        return None
    rows = blocks.unsqueeze(1) * block + torch.arange(block).unsqueeze(0)  # [C, block]
    inside = rows < n
    rows = rows.clamp(max=n - 1)
    values = x[rows, cols.unsqueeze(1)]
    hit = (values > threshold[cols].unsqueeze(1)) & inside & valid_rows[rows]
    rows, cols = rows[hit], cols.unsqueeze(1).expand_as(hit)[hit]
    order = torch.argsort(cols * n + rows)  # grouped by column, rows ascending
    return rows[order], cols[order]


def update_top_screened(best_values: torch.Tensor, best_refs: torch.Tensor, x: torch.Tensor,
                        batch: dict[str, Any]) -> None:
    """Merge the batch's values above each column's current k-th best into its top-k list."""
    k = best_values.shape[1]
    width = x.shape[1]
    threshold = best_values[:, -1]
    found = _screen(x, threshold, batch["valid_rows"]) if bool(torch.isfinite(threshold).all()) else None
    if found is not None:
        rows, cols = found
        if cols.numel() == 0:
            return
        counts = torch.bincount(cols, minlength=width)
        most = int(counts.max())
    if found is None or most > 4 * k:  # first batches: a dense top-k of the batch is cheaper
        masked = x.float().index_fill(0, batch["invalid_rows"], float("-inf"))
        top = torch.topk(masked, min(k, x.shape[0]), dim=0)
        keep = torch.isfinite(top.values.t())
        cols = torch.arange(width).unsqueeze(1).expand(width, top.values.shape[0])[keep]
        rows = top.indices.t()[keep]
        counts = torch.bincount(cols, minlength=width)
        most = int(counts.max())
    slot = torch.arange(cols.numel()) - (torch.cumsum(counts, 0) - counts)[cols]
    values = torch.full((width, k + most), float("-inf"))
    values[:, :k] = best_values
    values[cols, k + slot] = x[rows, cols].float()
    refs = torch.zeros((width, k + most, 3), dtype=torch.int64)
    refs[:, :k] = best_refs
    refs[cols, k + slot] = torch.stack([batch["docs"][rows], batch["pos"][rows], batch["ids"][rows]], dim=1)
    # stable: on ties the older entry (lower slot) wins, so results do not depend on batching order
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    best_values.copy_(torch.gather(values, 1, order))
    best_refs.copy_(torch.gather(refs, 1, order.unsqueeze(-1).expand(width, k, 3)))


def update_top_dense(best_values: torch.Tensor, best_refs: torch.Tensor, x: torch.Tensor,
                     batch: dict[str, Any]) -> None:
    """The same merge without host synchronisation: dense ``topk`` of the batch, then a stable sort."""
    k = best_values.shape[1]
    width = x.shape[1]
    masked = x.float().masked_fill(~batch["valid_rows"].unsqueeze(1), float("-inf"))
    top = torch.topk(masked, min(k, x.shape[0]), dim=0)  # [k', width], descending
    rows = top.indices.t()  # [width, k']
    new_refs = torch.stack([batch["docs"][rows], batch["pos"][rows], batch["ids"][rows]], dim=-1)
    new_values = top.values.t()
    new_refs.masked_fill_(~torch.isfinite(new_values).unsqueeze(-1), 0)  # unfilled slots: zero refs
    values = torch.cat([best_values, new_values], dim=1)
    refs = torch.cat([best_refs, new_refs], dim=1)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    best_values.copy_(torch.gather(values, 1, order))
    best_refs.copy_(torch.gather(refs, 1, order.unsqueeze(-1).expand(width, k, 3)))
