"""Frozen GDN: CompressAI's generalized divisive normalization with constant, pre-evaluated parameters."""

from __future__ import annotations

from typing import Any

import torch
from compressai.layers import GDN
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from codecloss._layout import chunks, dense, memory_format_of, pixel_rows

__all__ = ["FrozenGDN"]


class FrozenGDN(nn.Module):
    r"""Inference-only GDN with its reparametrised :math:`\beta, \gamma` evaluated once.

    CompressAI's :class:`~compressai.layers.GDN` (Ballé et al., "Density Modeling
    of Images Using a Generalized Normalization Transformation", ICLR 2016)
    recomputes the non-negative reparametrisation of beta and gamma on every
    call. For a frozen backbone these are constants, so this layer stores them
    as buffers and computes :math:`y_i = x_i / \sqrt{\beta_i + \sum_j \gamma_{ij} x_j^2}`
    in the dtype of ``x``. float16 and lower are promoted to float32 (squares overflow float16
    above 256). bfloat16 stays bfloat16 end to end, with no float32 copies: the sum of squares is
    a matrix product of positive terms, accumulated in float32 by the matrix kernels and rounded
    once, so it has no cancellation, and ``rsqrt`` adds one more rounding: the output is within
    a few bfloat16 ulps of float32's (``tests/test_bf16.py`` bounds it at 4). Forward and a hand-written backward
    (first-order gradients only) run per pixel chunk, so on CPU their element-wise
    work allocates only the tensors that outlive the call.

    Args:
        beta, gamma: the evaluated (non-negative) parameters.
        output_modified: the consumer changes the output in place (CompressAI's
            ``ResidualBlockWithStride`` adds its skip branch with ``+=``), so the backward
            pass keeps the input instead of the output and recomputes ``y = x r`` from it.

    Example:
        >>> gdn = FrozenGDN.from_gdn(GDN(8))
        >>> gdn(torch.rand(1, 8, 4, 4)).shape
        torch.Size([1, 8, 4, 4])
    """

    def __init__(self, beta: Tensor, gamma: Tensor, output_modified: bool = False) -> None:
        super().__init__()
        self.output_modified = output_modified
        channels = beta.numel()
        self.register_buffer("beta", beta.detach().clone())
        self.register_buffer("gamma", gamma.detach().reshape(channels, channels).clone())

    @classmethod
    def from_gdn(cls, gdn: GDN, output_modified: bool = False) -> "FrozenGDN":
        """Freeze a (forward, not inverse) CompressAI GDN layer (``output_modified`` as in the class)."""
        if gdn.inverse or type(gdn) is not GDN:
            raise TypeError(f"gdn: expected a forward compressai.layers.GDN, got {gdn!r}")
        with torch.no_grad():
            return cls(gdn.beta_reparam(gdn.beta), gdn.gamma_reparam(gdn.gamma), output_modified)

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        """Normalise ``x`` (N, C, H, W).

        Args:
            x: input features.
            inplace: write the result into ``x`` (when it is a dense NCHW or NHWC tensor); only for
                inputs nothing else reads afterwards, such as a convolution's fresh output.

        Returns:
            Normalised features, same shape, dtype and memory format as ``x``.
        """
        work = _work_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            return _GDNFunction.apply(x, self.beta.to(work), self.gamma.to(work),
                                      inplace and not self.output_modified, self.output_modified)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype GDN computes in for inputs of ``dtype``: bfloat16 stays (float32's exponent range), others
    are promoted to at least float32 (float16's squares overflow above 256)."""
    return dtype if dtype == torch.bfloat16 else torch.promote_types(dtype, torch.float32)


def _rows(x: Tensor) -> Tensor:
    """:func:`pixel_rows` of ``x``, as one (1, N*H*W, C) matrix when NHWC (fewer, larger matrix products)."""
    rows = pixel_rows(x)
    return rows.view(1, -1, rows.shape[2]) if rows.is_contiguous() else rows


class _GDNFunction(torch.autograd.Function):
    """GDN with a fused backward; with ``r = (beta + gamma x^2)^(-1/2)``, ``y = x r`` and
    ``dL/dx = g r - (y / r) (gamma^T (g y r^2))``.

    ``beta`` and ``gamma`` are in the compute dtype (:func:`_work_dtype`) and ``r`` is kept in it; ``x``,
    ``y`` and the input gradient keep the dtype of ``x``. It saves the output ``y`` and ``r``, not the
    input: the next convolution keeps ``y`` alive anyway, so the input can be freed (or overwritten,
    ``inplace``). With ``save_input`` it saves ``x`` and ``r`` instead (for consumers that modify ``y``
    in place) and recomputes ``y = x r``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, beta: Tensor, gamma: Tensor, inplace: bool, save_input: bool) -> Tensor:
        source = dense(x)
        inplace = inplace and source is x
        y = x if inplace else torch.empty_like(source)
        keep_norm = ctx.needs_input_grad[0]
        r = torch.empty_like(source, dtype=gamma.dtype) if keep_norm else None
        x_rows, y_rows = _rows(source), _rows(y)
        r_rows = _rows(r) if r is not None else None
        gamma_t = gamma.t().expand(x_rows.shape[0], -1, -1)
        for part in chunks(x_rows):
            x_part = x_rows[:, part].to(gamma.dtype)  # a view unless x is of lower precision
            inv_norm = torch.baddbmm(beta, x_part * x_part, gamma_t, out=r_rows[:, part] if r_rows is not None else None)
            torch.mul(x_part, inv_norm.rsqrt_(), out=y_rows[:, part])
        if inplace:
            ctx.mark_dirty(x)
        if keep_norm:
            ctx.save_input = save_input
            ctx.save_for_backward(source if save_input else y, r, gamma)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        with torch.autocast(grad.device.type, enabled=False):  # a backward called under autocast: same islands
            return _GDNFunction._input_grad(ctx, grad), None, None, None, None

    @staticmethod
    def _input_grad(ctx: Any, grad: Tensor) -> Tensor:
        saved, r, gamma = ctx.saved_tensors
        grad = grad.contiguous(memory_format=memory_format_of(saved))
        grad_x = torch.empty_like(saved)
        g_rows, saved_rows, r_rows, out_rows = (_rows(t) for t in (grad, saved, r, grad_x))
        gamma_b = gamma.expand(g_rows.shape[0], -1, -1)
        for part in chunks(g_rows):
            r_part, out_part = r_rows[:, part], out_rows[:, part]
            y_part = saved_rows[:, part].to(gamma.dtype)
            y_part = y_part * r_part if ctx.save_input else y_part
            u = torch.mul(g_rows[:, part], r_part, out=out_part if out_part.dtype == gamma.dtype else None)
            mixed = torch.bmm((u * y_part).mul_(r_part), gamma_b)
            u.addcdiv_(mixed.mul_(y_part), r_part, value=-1)
            if u is not out_part:
                out_part.copy_(u)
        return grad_x
