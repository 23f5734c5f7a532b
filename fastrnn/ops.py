"""The fused recurrence ops: typed Python functions, fake (meta) kernels and autograd.

Each op runs one layer in one direction over a packed sequence. The caller
computes the input projection of every token with one matmul beforehand
(``input_proj = x_packed @ weight_ih.T + bias_ih``, shape ``[total_tokens, G*H]``
with G = 4 for LSTM, 3 for GRU, 1 for RNN) and passes the ``batch_sizes`` of the
PackedSequence (a CPU int64 tensor; a padded batch of B rows and T steps is
``batch_sizes = [B] * T``). At step t only the first ``batch_sizes[t]`` rows are
live; ``reverse=True`` runs the steps from last to first, each row starting
from ``h0`` at its own last token.

``zoneout`` (optional, not differentiable) holds the zoneout keep weights of every token
and hidden unit, ``[total_tokens, K*H]`` (K = 2 for LSTM: the h block, then the c block;
else 1): ``h_t = z*h_{t-1} + (1-z)*h~_t`` (docs/ops.md).

The C++ kernels are registered as ``torch.ops.fastrnn.<cell>_forward`` (whose
``keep_workspace`` says whether to keep what backward needs) and
``<cell>_backward``; this module gives them fake implementations (for
``torch.compile`` and ``torch.library.opcheck``) and autograd formulas, as in
pytorch/extension-cpp.
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ._extension import _C  # noqa: F401  (loads the library: registers torch.ops.fastrnn.*)
from . import _compat, reference
from .cells import CELLS  # cell -> (gates G, saved values per unit, has a cell state c)
from .cells import ZONEOUT_SAVED  # cell -> saved values per unit with zoneout

__all__ = ["lstm", "gru", "rnn_tanh", "rnn_relu", "layer", "rnn_stack", "input_projection",
           "permute_batch", "Recompute", "CELLS"]


def _backward_may_follow(*tensors: Optional[Tensor]) -> bool:
    """The ops' keep_workspace: without a backward to come, the values it would need are
    not kept (a large fresh buffer costs more in page faults than the recurrence).
    Always kept under torch.jit.trace: the traced graph must not depend on the grad mode
    it was traced in (its check run and later callers may differ)."""
    if torch.jit.is_tracing():
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _eager() -> bool:
    """Whether the op wrappers may take the eager fast path (_call): not while torch.compile,
    torch.jit.trace or a torch.func transform looks at the call; those see the registered
    op and its torch.library autograd."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing()
                or _compat.functorch_transform_active())


def _call(cell: str, args: tuple, recompute: Optional[Recompute],
          zoneout: Optional[Tensor] = None) -> tuple:
    """Runs ``<cell>_forward`` on ``args`` (its schema's arguments up to ``reverse``) and
    ``zoneout``.

    In eager mode the op's torch.library autograd (Python that flattens arguments and
    redispatches through the dispatcher, ~35 us a call forward and as much backward) is
    bypassed: with a backward to follow the op runs inside an autograd.Function with the
    same formula (_register's Fused), which also carries ``recompute``; without one it runs
    below the Autograd key. Either way the dispatcher still sees the op (profiler, dispatch
    modes). Traced or compiled calls see the registered op, without ``recompute``.
    """
    op = _FORWARD_OPS[cell]
    keep = _backward_may_follow(*args[:-1])
    if not _eager():
        return op(*args, keep, zoneout)
    if keep:
        return _AUTOGRAD[cell].apply(*args, keep, zoneout, recompute)
    with _compat.below_autograd():
        return op(*args, keep, zoneout)


def lstm(
    input_proj: Tensor,
    batch_sizes: Tensor,
    weight_hh: Tensor,
    bias_hh: Optional[Tensor],
    h0: Tensor,
    c0: Tensor,
    reverse: bool = False,
    recompute: Optional[Recompute] = None,
    zoneout: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """LSTM recurrence over a packed sequence. Returns ``(output, h_n, c_n)``;
    ``output`` is ``[total_tokens, H]`` in the packed layout of ``input_proj``.
    ``recompute`` says how ``input_proj`` was made, for double backward (Recompute).
    ``zoneout``: the keep weights ``[total_tokens, 2*H]`` (h block, then c block), or None."""
    output, h_n, c_n, _ = _call("lstm", (input_proj, batch_sizes, weight_hh, bias_hh, h0, c0,
                                         reverse), recompute, zoneout)
    return output, h_n, c_n


def _no_cell_op(cell: str):
    def run(
        input_proj: Tensor,
        batch_sizes: Tensor,
        weight_hh: Tensor,
        bias_hh: Optional[Tensor],
        h0: Tensor,
        reverse: bool = False,
        recompute: Optional[Recompute] = None,
        zoneout: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        output, h_n, _ = _call(cell, (input_proj, batch_sizes, weight_hh, bias_hh, h0, reverse),
                               recompute, zoneout)
        return output, h_n

    run.__name__ = run.__qualname__ = cell
    run.__doc__ = (
        f"{cell} recurrence over a packed sequence. Returns ``(output, h_n)``; "
        "``output`` is ``[total_tokens, H]`` in the packed layout of ``input_proj``. "
        "``recompute`` says how ``input_proj`` was made, for double backward (Recompute). "
        "``zoneout``: the keep weights ``[total_tokens, H]``, or None."
    )
    return run


gru = _no_cell_op("gru")
rnn_tanh = _no_cell_op("rnn_tanh")
rnn_relu = _no_cell_op("rnn_relu")


def input_projection(data: Tensor, weight_ih: Tensor, bias_ih: Optional[Tensor]) -> Tensor:
    """``data @ weight_ih.T + bias_ih``: the ops' ``input_proj`` for a layer input."""
    if bias_ih is None:
        return data.matmul(weight_ih.t())
    return torch.addmm(bias_ih, data, weight_ih.t())


def split_biases(cell: str, bias_ih: Optional[Tensor],
                 bias_hh: Optional[Tensor]) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(bias of the input projection, bias of the recurrence)`` as the layer op splits
    them (csrc/layer.cpp): the LSTM and the Elman RNN add both biases to the same sums, so
    the recurrence takes ``bias_ih + bias_hh`` and the projection none (a plain mm is ~10 us
    cheaper than addmm at the AG News shape); the GRU's n gate keeps them apart. The
    compiled and traced paths follow it, so that they give the eager path's bits."""
    if cell == "gru" or bias_ih is None:
        return bias_ih, bias_hh
    return None, bias_ih if bias_hh is None else bias_ih + bias_hh


def layer(cell: str, input: Tensor, batch_sizes: Tensor, weight_ih: Tensor,
          bias_ih: Optional[Tensor], weight_hh: Tensor, bias_hh: Optional[Tensor], h0: Tensor,
          c0: Optional[Tensor], reverse: bool = False,
          zoneout: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """One layer in one direction, its input projection included: ``torch.ops.fastrnn.
    <cell>_layer``, whose autograd is C++ (csrc/layer.cpp). Returns ``(output, h_n, c_n)``,
    ``c_n`` None without a cell state. The same results as ``input_projection`` followed by
    the cell's function; the eager path of the modules (functional.rnn_stack)."""
    has_cell = CELLS[cell][2]
    states = (h0, c0) if has_cell else (h0,)
    results = _LAYER_OPS[cell](input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh,
                               *states, reverse, zoneout)
    return results[0], results[1], (results[2] if has_cell else None)


def rnn_stack(cell: str, data: Tensor, batch_sizes: Tensor, h0: Optional[Tensor],
              c0: Optional[Tensor], unsorted_indices: Optional[Tensor], weights: List[Tensor],
              has_bias: bool, num_layers: int, dropout: float, train: bool,
              bidirectional: bool) -> List[Tensor]:
    """A module's layers over packed data in one op (csrc/stack.cpp): the layer ops of every
    layer and direction, dropout between layers. ``h0``/``c0``: ``[layers * directions,
    batch, H]`` in the sorted order of the packed rows, or None for zeros; ``weights`` in
    torch.nn's order, without projections. Returns ``[output, h_n(, c_n)]``, the states
    permuted by ``unsorted_indices`` (permute_batch) when given. Eager calls only: its
    kernel is C++ composed of ops with their own autograd (CompositeImplicitAutograd)."""
    return _RNN_STACK(cell, data, batch_sizes, h0, c0, unsorted_indices, weights, has_bias,
                      num_layers, dropout, train, bidirectional)


def permute_batch(states: Tensor, indices: Tensor) -> Tensor:
    """``states.index_select(1, indices)`` (torch.nn's permute_hidden) whose backward, when
    ``indices`` is a permutation, is the gather by its inverse rather than index_select's
    index_add into zeros (~175 us for one AG News state on the CPU): csrc/batch_order.cpp."""
    return torch.ops.fastrnn.permute_batch.default(states, indices)


class Recompute(NamedTuple):
    """How an op's ``input_proj`` is computed again, ``fn(*args)``, for double backward
    (``recompute=`` of the ops). The op keeps only the recurrence's own results, and keeping
    ``input_proj`` alive for that rare case would cost G*H values per token. ``args`` are
    saved with the op's saved tensors (autograd frees them after backward; they are tensors
    autograd keeps anyway, e.g. the layer input that the projection's matmul saves); ``fn``
    must hold no tensors itself. Without it, double backward through the op is an error."""

    fn: Callable[..., Tensor]
    args: Tuple[Optional[Tensor], ...]


def _workspace_dtype(dtype: torch.dtype) -> torch.dtype:
    # Reduced-precision inputs are computed (and saved for backward) in float32.
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _check_same_device(weight_hh: Tensor, **tensors: Optional[Tensor]) -> None:
    for name, t in tensors.items():
        if t is not None:
            torch._check(
                t.device == weight_hh.device,
                lambda: f"fastrnn: {name} must be on {weight_hh.device} (the device of "
                f"weight_hh), got {t.device}",
            )


def _check_defined(**tensors: Optional[Tensor]) -> None:
    # None for a required Tensor argument reaches a fake kernel as None.
    for name, t in tensors.items():
        torch._check(isinstance(t, Tensor),
                     lambda: f"fastrnn: {name} must be a tensor, got {type(t).__name__}")


def _check_batch_sizes(batch_sizes: Optional[Tensor], data: Tensor) -> None:
    torch._check(
        isinstance(batch_sizes, Tensor)
        and (batch_sizes.device.type == "cpu" or data.device.type == "meta"),
        lambda: "fastrnn: batch_sizes must be a 1-D int64 tensor on the CPU "
        "(as in PackedSequence), got "
        + (f"one on {batch_sizes.device}" if isinstance(batch_sizes, Tensor)
           else type(batch_sizes).__name__),
    )


_FORWARD_OPS = {cell: getattr(torch.ops.fastrnn, f"{cell}_forward").default for cell in CELLS}
_BACKWARD_OPS = {cell: getattr(torch.ops.fastrnn, f"{cell}_backward").default for cell in CELLS}
_LAYER_OPS = {cell: getattr(torch.ops.fastrnn, f"{cell}_layer").default for cell in CELLS}
_RNN_STACK = torch.ops.fastrnn.rnn_stack.default
# cell -> the autograd.Function of the eager path (_call), made by _register.
_AUTOGRAD = {}

# Tensors every forward op saves: batch_sizes, weight_hh, h0[, c0], output, workspace,
# zoneout (None without).
_OWN_SAVED = {cell: 7 if has_cell else 6 for cell, (_, _, has_cell) in CELLS.items()}


def _arguments(op, args: tuple) -> dict:
    """The op's arguments by their schema names (defaults filled in)."""
    named = {}
    for index, argument in enumerate(op._schema.arguments):
        named[argument.name] = args[index] if index < len(args) else argument.default_value
    return named


def _forward_fake(cell: str, *args):
    gates, saved, has_cell = CELLS[cell]
    a = _arguments(_FORWARD_OPS[cell], args)
    input_proj, weight_hh, h0 = a["input_proj"], a["weight_hh"], a["h0"]
    _check_defined(input_proj=input_proj, weight_hh=weight_hh, h0=h0,
                   **({"c0": a["c0"]} if has_cell else {}))
    _check_batch_sizes(a["batch_sizes"], input_proj)
    # One meta tensor among real ones sends the call here: refuse mixed devices rather than
    # return uninitialised results.
    zoneout = a["zoneout"]
    _check_same_device(weight_hh, input_proj=input_proj, bias_hh=a["bias_hh"], h0=h0,
                       c0=a.get("c0"), zoneout=zoneout)
    torch._check(
        weight_hh.dim() == 2 and weight_hh.shape[0] == gates * weight_hh.shape[1],
        lambda: f"fastrnn: weight_hh of {cell} must have shape [{gates}*hidden_size, "
        f"hidden_size], got {list(weight_hh.shape)}",
    )
    tokens, hidden = input_proj.shape[0], weight_hh.shape[1]
    torch._check(
        input_proj.dim() == 2 and input_proj.shape[1] == gates * hidden,
        lambda: f"fastrnn: input_proj must have shape [total_tokens, {gates * hidden}], "
        f"got {list(input_proj.shape)}",
    )
    if zoneout is not None:
        width = (2 if has_cell else 1) * hidden
        torch._check(
            zoneout.dim() == 2 and zoneout.shape[0] == tokens and zoneout.shape[1] == width,
            lambda: f"fastrnn: zoneout must have shape [total_tokens={tokens}, {width}], got "
            f"{list(zoneout.shape)}",
        )
        torch._check(zoneout.dtype == weight_hh.dtype,
                     lambda: f"fastrnn: zoneout must have dtype {weight_hh.dtype} (that of "
                     f"weight_hh), got {zoneout.dtype}")
        saved = ZONEOUT_SAVED[cell]
    output = input_proj.new_empty((tokens, hidden))
    workspace = input_proj.new_empty(
        (tokens if saved and a["keep_workspace"] else 0, saved * hidden),
        dtype=_workspace_dtype(input_proj.dtype),
    )
    states = [torch.empty_like(h0) for _ in range(2 if has_cell else 1)]
    return (output, *states, workspace)


def _backward_fake(cell: str, *args):
    a = _arguments(_BACKWARD_OPS[cell], args)
    tensors = {name: value for name, value in a.items() if name != "reverse"}
    _check_defined(**{k: v for k, v in tensors.items() if k not in ("batch_sizes", "zoneout")})
    _check_batch_sizes(a["batch_sizes"], a["grad_output"])
    weight_hh, h0 = a["weight_hh"], a["h0"]
    del tensors["batch_sizes"], tensors["weight_hh"]
    _check_same_device(weight_hh, **tensors)
    grads = [
        weight_hh.new_empty((a["grad_output"].shape[0], weight_hh.shape[0])),
        torch.empty_like(weight_hh),
        weight_hh.new_empty((weight_hh.shape[0],)),
        torch.empty_like(h0),
    ]
    if CELLS[cell][2]:
        grads.append(torch.empty_like(h0))
    return tuple(grads)


def _save_for_backward(cell: str, ctx, inputs: tuple, output: tuple,
                       recompute: Optional[Recompute]) -> None:
    # Unused outputs (always the workspace) get None, not a materialised zero tensor.
    ctx.set_materialize_grads(False)
    has_cell = CELLS[cell][2]
    input_proj, batch_sizes, weight_hh, bias_hh, h0 = inputs[:5]
    c0 = inputs[5] if has_cell else None
    ctx.reverse, keep_workspace, zoneout = inputs[6 if has_cell else 5:]
    torch._check(keep_workspace, lambda: f"fastrnn: {cell}_forward with keep_workspace=False "
                 "cannot be differentiated (its inputs require grad): pass True")
    ctx.has_bias = bias_hh is not None
    # Only for double backward (_backward_by_recomputation): the recompute function, and
    # after the op's own saved tensors bias_hh and the recompute arguments.
    ctx.recompute = None if recompute is None else recompute.fn
    extra = () if recompute is None else (bias_hh, *recompute.args)
    out, workspace = output[0], output[-1]
    saved_states = (h0, c0) if has_cell else (h0,)
    ctx.save_for_backward(batch_sizes, weight_hh, *saved_states, out, workspace, zoneout, *extra)


def _run_backward_op(cell: str, *args):
    # Without create_graph nothing differentiates this call: skip the backward op's Python
    # autograd (no_double_backward in _register), which would only cost time. With
    # create_graph it is called normally and raises.
    if torch.is_grad_enabled() or not _eager():
        return _BACKWARD_OPS[cell](*args)
    with _compat.below_autograd():
        return _BACKWARD_OPS[cell](*args)


def _backward(cell: str, ctx, *grads):
    """The op's autograd formula: gradients of (input_proj, batch_sizes, weight_hh, bias_hh,
    h0[, c0], reverse, keep_workspace, zoneout)."""
    if torch.is_grad_enabled() and ctx.recompute is not None:  # create_graph=True
        return _backward_by_recomputation(cell, ctx, grads)
    batch_sizes, weight_hh, *states, out, workspace, zoneout = \
        ctx.saved_tensors[:_OWN_SAVED[cell]]
    grad_output = torch.zeros_like(out) if grads[0] is None else grads[0]
    state_grads = [torch.zeros_like(state) if grad is None else grad
                   for state, grad in zip(states, grads[1:])]
    results = _run_backward_op(
        cell, grad_output.contiguous(), *(g.contiguous() for g in state_grads), batch_sizes,
        weight_hh, *states, out, workspace, ctx.reverse, zoneout)
    gi, gw, gb, *state_input_grads = results
    return (gi, None, gw, gb if ctx.has_bias else None, *state_input_grads, None, None, None)


def _register(cell: str) -> None:
    """The op's fake kernels and autograd (torch.library), and its eager autograd.Function."""
    torch.library.register_fake(f"fastrnn::{cell}_forward")(partial(_forward_fake, cell))
    torch.library.register_fake(f"fastrnn::{cell}_backward")(partial(_backward_fake, cell))
    # The registered op (seen by torch.compile, jit.trace) carries no recompute recipe.
    torch.library.register_autograd(
        f"fastrnn::{cell}_forward", partial(_backward, cell),
        setup_context=lambda ctx, inputs, output: _save_for_backward(cell, ctx, inputs, output,
                                                                     None))
    forward_op = _FORWARD_OPS[cell]

    class Fused(torch.autograd.Function):
        """The eager path of the op's autograd (_call): the same formula, plus the recompute
        recipe for double backward as its last argument."""

        # forward takes ctx (no separate setup_context): with one, Function.apply binds
        # the arguments with inspect.signature on every call (~20 us).
        @staticmethod
        def forward(ctx, *args):
            *inputs, recompute = args
            with _compat.below_autograd():
                output = forward_op(*inputs)
            _save_for_backward(cell, ctx, inputs, output, recompute)
            ctx.mark_non_differentiable(output[-1])
            return output

        @staticmethod
        def backward(ctx, *grads):
            return (*_backward(cell, ctx, *grads), None)

    Fused.__name__ = Fused.__qualname__ = f"{cell}_fused"
    _AUTOGRAD[cell] = Fused

    # The backward op itself has no derivative (create_graph=True calls it only when the
    # layer cannot be recomputed, see _backward): without this, autograd would only warn and
    # treat it as constant, i.e. silently wrong second derivatives.
    def no_double_backward(ctx, *grads):
        raise _double_backward_error(cell)

    torch.library.register_autograd(f"fastrnn::{cell}_backward", no_double_backward,
                                    setup_context=lambda ctx, inputs, output: None)


def _double_backward_error(cell: str) -> RuntimeError:
    return RuntimeError(
        f"fastrnn: double backward through {cell} (the gradient of fastrnn's gradient, "
        "e.g. a gradient penalty after create_graph=True) needs the op called with "
        "recompute=fastrnn.ops.Recompute(fn, args) saying how input_proj was made (as "
        "fastrnn's modules and rnn_stack do), outside torch.compile and torch.jit.trace")


def _layer_fake(cell: str, *args):
    a = _arguments(_LAYER_OPS[cell], args)
    _check_defined(input=a["input"], weight_ih=a["weight_ih"])
    _check_same_device(a["weight_hh"], input=a["input"], weight_ih=a["weight_ih"],
                       bias_ih=a["bias_ih"])
    proj = input_projection(a["input"], a["weight_ih"], a["bias_ih"])
    states = (a["h0"], a["c0"]) if CELLS[cell][2] else (a["h0"],)
    results = _FORWARD_OPS[cell](proj, a["batch_sizes"], a["weight_hh"], a["bias_hh"], *states,
                                 a["reverse"], False, a["zoneout"])
    return [results[0].clone(), *results[1:-1]]


def _recompute_direction(cell: str, project, batch_sizes: Tensor, weight_hh: Tensor,
                         bias_hh: Optional[Tensor], h0: Tensor, c0: Optional[Tensor],
                         reverse: bool, zoneout: Optional[Tensor]):
    """The layer again in plain torch ops (fastrnn.reference), autocast off: ``(proj,
    results)`` with ``proj = project()`` and ``results = (output, h_n, c_n)``."""
    device = weight_hh.device.type
    with torch.autocast(device, enabled=False) if device in ("cpu", "cuda") else nullcontext():
        proj = project()
        return proj, reference.direction(cell, proj, batch_sizes, weight_hh, bias_hh, h0, c0,
                                         reverse, zoneout)


def _grads_with_graph(results, grads, inputs, wanted) -> dict:
    """``{i: gradient of inputs[i]}`` for i in ``wanted``, of the results weighted by
    ``grads`` (None entries skipped), differentiable (create_graph); None where unused."""
    pairs = [(r, g) for r, g in zip(results, grads) if r is not None and g is not None]
    if not (wanted and pairs):
        return {}
    return dict(zip(wanted, torch.autograd.grad(
        [r for r, _ in pairs], [inputs[i] for i in wanted], [g for _, g in pairs],
        create_graph=True, allow_unused=True)))


def _layer_grads_by_recomputation(cell: str, inputs: list, grads: list, reverse: bool,
                                  needs: list) -> list:
    """The kernel of ``fastrnn::layer_grads_by_recomputation`` (csrc/layer.cpp): a layer op's
    double backward, the gradients of its ``inputs`` (those of ``needs``; the others come
    back empty) as differentiable functions, by recomputing the layer in plain ops."""
    input, batch_sizes, weight_ih, bias_ih, weight_hh, bias_hh, h0, c0, zoneout = inputs
    _, results = _recompute_direction(cell, lambda: input_projection(input, weight_ih, bias_ih),
                                      batch_sizes, weight_hh, bias_hh, h0, c0, reverse, zoneout)
    wanted = [i for i, need in enumerate(needs) if need and inputs[i].requires_grad]
    got = _grads_with_graph(results, grads, inputs, wanted)
    return [(torch.zeros_like(t) if got.get(i) is None else got[i]) if need
            else weight_hh.new_empty(0) for i, (t, need) in enumerate(zip(inputs, needs))]


# The Python kernel of the layer ops' double backward (called from their C++ autograd).
_LIBRARY = torch.library.Library("fastrnn", "IMPL")
_LIBRARY.impl("layer_grads_by_recomputation", _layer_grads_by_recomputation,
              "CompositeImplicitAutograd")


def _backward_by_recomputation(cell: str, ctx, grads):
    """The gradients as a differentiable function of the op's inputs: the layer is
    recomputed in plain torch ops (fastrnn.reference) and differentiated with
    create_graph=True. Exact, but as slow as torch.nn's unfused packed path."""
    has_cell = CELLS[cell][2]
    saved = ctx.saved_tensors
    batch_sizes, weight_hh, *states, _, _, zoneout = saved[:_OWN_SAVED[cell]]
    bias_hh, *recompute_args = saved[_OWN_SAVED[cell]:]
    h0, c0 = states[0], (states[1] if has_cell else None)
    proj, results = _recompute_direction(cell, lambda: ctx.recompute(*recompute_args),
                                         batch_sizes, weight_hh, bias_hh, h0, c0, ctx.reverse,
                                         zoneout)
    # The op's differentiable inputs, in the order of its schema after batch_sizes.
    inputs = [proj, weight_hh, bias_hh, h0] + ([c0] if has_cell else [])
    needs = [ctx.needs_input_grad[0]] + list(ctx.needs_input_grad[2:len(inputs) + 1])
    wanted = [i for i, t in enumerate(inputs) if needs[i] and t is not None and t.requires_grad]
    got = _grads_with_graph(results, grads, inputs, wanted)
    found = [got.get(i) for i in range(len(inputs))]
    return (found[0], None, *found[1:], None, None, None)


torch.library.register_fake("fastrnn::permute_batch")(
    lambda states, indices: states.index_select(1, indices))
for _cell in CELLS:
    _register(_cell)
    torch.library.register_fake(f"fastrnn::{_cell}_layer")(partial(_layer_fake, _cell))
