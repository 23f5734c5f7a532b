"""One direction of one layer in plain torch ops: the fused ops' math, differentiable
to any order.

It serves double backward (a gradient of fastrnn's gradient, e.g. a gradient
penalty): when autograd asks for a gradient with ``create_graph=True``, the ops'
backward recomputes the layer here and differentiates it, instead of running the
fused backward kernel, whose result autograd could not differentiate further.
It is as slow as torch.nn's own packed path; the fused kernels serve everything else.
The same for the LayerNorm cells (layer_norm_direction). Within ``plain_ops()`` fastrnn's
modules run on it: the reference the tests and benchmarks compare with.
"""
import contextlib
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _zoneout_step(cell: str, gx: Tensor, h: Tensor, c: Optional[Tensor], weight_hh: Tensor,
                  bias_hh: Optional[Tensor], z: Optional[Tensor]
                  ) -> Tuple[Tensor, Optional[Tensor]]:
    """One step with zoneout's keep weights ``z`` (the step's rows of the op's zoneout: the
    h block, then for LSTM the c block): h = z_h*h_prev + (1-z_h)*h~, c likewise."""
    h_new, c_new = _cell_step(cell, gx, h, c, weight_hh, bias_hh)
    if z is None:
        return h_new, c_new
    hidden = h.shape[1]
    z_h = z[:, :hidden]
    h_new = z_h * h + (1 - z_h) * h_new
    if c is not None:
        z_c = z[:, hidden:]
        c_new = z_c * c + (1 - z_c) * c_new
    return h_new, c_new


def _cell_step(cell: str, gx: Tensor, h: Tensor, c: Optional[Tensor], weight_hh: Tensor,
               bias_hh: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    gh = h.matmul(weight_hh.t())
    if bias_hh is not None:
        gh = gh + bias_hh
    if cell == "lstm":
        i, f, g, o = (gx + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        return _gru_update(gx, gh, h), None
    if cell == "rnn_tanh":
        return torch.tanh(gx + gh), None
    return torch.relu(gx + gh), None


def _gru_update(gx: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """torch.nn's GRU step from the input and hidden projections' gate blocks."""
    x_r, x_z, x_n = gx.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)


def direction(cell: str, input_proj: Tensor, batch_sizes: Tensor, weight_hh: Tensor,
              bias_hh: Optional[Tensor], h0: Tensor, c0: Optional[Tensor], reverse: bool,
              zoneout: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """What ``torch.ops.fastrnn.<cell>_forward`` computes: ``(output, h_n, c_n)``,
    ``c_n`` None unless LSTM. Rows that are not live at a step keep their state.
    ``zoneout``: the op's keep weights ``[total_tokens, K*H]`` (not differentiated), or None."""
    def step(rows, h, c):
        gx, z = rows
        return _zoneout_step(cell, gx, h, c, weight_hh, bias_hh, None if z is None else z.detach())

    return _walk(step, (input_proj, zoneout), batch_sizes, h0, c0, reverse)


def _walk(step, per_token: Tuple[Optional[Tensor], ...], batch_sizes: Tensor, h0: Tensor,
          c0: Optional[Tensor], reverse: bool) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The packed time loop: ``step(rows, h, c) -> (h, c)`` on the live rows of each step,
    ``rows`` the step's slices of the ``per_token`` tensors (the first one input_proj; None
    stays None); rows that are not live keep their state."""
    sizes = batch_sizes.tolist()
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    h, c = h0, c0
    outputs = [None] * len(sizes)
    for t in (reversed(range(len(sizes))) if reverse else range(len(sizes))):
        live = sizes[t]
        rows = tuple(None if x is None else x[offsets[t]:offsets[t + 1]] for x in per_token)
        h_live, c_live = step(rows, h[:live], None if c is None else c[:live])
        outputs[t] = h_live
        h = torch.cat([h_live, h[live:]])
        if c is not None:
            c = torch.cat([c_live, c[live:]])
    output = torch.cat(outputs) if outputs else per_token[0].new_empty((0, h0.shape[1]))
    return output, h, c


LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, as the kernels (csrc/cell_math.h)


def layer_norm_direction(cell: str, input_proj: Tensor, batch_sizes: Tensor, weight_hh: Tensor,
                         ln_hh_weight: Tensor, ln_hh_bias: Optional[Tensor],
                         ln_c_weight: Optional[Tensor], ln_c_bias: Optional[Tensor], h0: Tensor,
                         c0: Optional[Tensor], reverse: bool
                         ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """What ``torch.ops.fastrnn.layer_norm_<lstm|gru>_forward`` computes, in plain torch ops
    (``input_proj`` already normalised): ``(output, h_n, c_n)``, ``c_n`` None for the GRU."""
    gates = input_proj.shape[1]

    def step(rows, h, c):
        (gx,) = rows
        gh = F.layer_norm(h.matmul(weight_hh.t()), (gates,), ln_hh_weight, ln_hh_bias,
                          LAYER_NORM_EPS)
        if cell == "layer_norm_lstm":
            i, f, g, o = (gx + gh).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            c_norm = F.layer_norm(c, (c.shape[1],), ln_c_weight, ln_c_bias, LAYER_NORM_EPS)
            return torch.sigmoid(o) * torch.tanh(c_norm), c
        return _gru_update(gx, gh, h), None

    return _walk(step, (input_proj,), batch_sizes, h0, c0, reverse)


_forced = [False]


@contextlib.contextmanager
def plain_ops() -> Iterator[None]:
    """Within it, fastrnn's modules and functional layers run their recurrence in the plain
    torch ops of this module instead of the fused kernels (the same masks, dropout and
    parameters): the reference that tests and benchmarks compare with."""
    previous, _forced[0] = _forced[0], True
    try:
        yield
    finally:
        _forced[0] = previous


def plain_ops_forced() -> bool:
    return _forced[0]
