"""The language model's layer math for the static engine's own loops (decode steps, follow-up turns).

Plain functions over transformers' own modules (their weights, norms, MLPs and rotary function), so
the numbers are the model's; only the KV handling is ours: keys and values are written into the
engine's buffers and attention reads the grouped-query KV as it is (attention.py).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import torch

from docvlm.models import attention, fused
from docvlm.models.merged import MergedLayer, merge_layer, mlp_output, query_key_value
from docvlm.models.text_rotary import family_rotary, fused_reproduces, query_key_positions

log = logging.getLogger(__name__)

CROSS_SCORES = 1 << 27  # attention scores of one cross-attention block (x 8 bytes: scores, fp32 softmax, weights)


class TextStack:
    """The decoder of a loaded model as the static engine sees it: layers, head, shapes, rotary function."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        self.text = model.model.language_model
        self.lm_head = model.lm_head
        self.dtype = dtype
        self.cross_layers = set(getattr(self.text, "cross_attention_layers", None) or [])
        device = self.lm_head.weight.device
        self.rotary_function = family_rotary(self.text, self.cross_layers)
        # the fused rotary where it runs and gives the family's numbers (text_rotary.py)
        self.fused_rotary = fused_reproduces(self.rotary_function, self.head_dim, dtype, device)
        self.positions = query_key_positions(self.rotary_function, self.fused_rotary)
        # where the fused kernels run, each self-attention layer's projections as few products (merged.py)
        self.merged = merge_layers(self.text, self.cross_layers) if fused.runs_on(dtype, device) \
            else [None] * len(self.text.layers)

    @property
    def head_dim(self) -> int:
        config = self.text.config
        return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    def layer_shapes(self) -> list[tuple[int, int, bool]]:
        """(kv heads, head dim, is cross-attention) of every decoder layer."""
        heads = self.text.config.num_key_value_heads
        return [(heads, self.head_dim, i in self.cross_layers) for i in range(len(self.text.layers))]

    def kv_bytes_per_token(self) -> int:
        """Bytes of KV one token costs in the self-attention layers."""
        layers = self.text.config.num_hidden_layers - len(self.cross_layers)
        return 2 * layers * self.text.config.num_key_value_heads * self.head_dim * self.dtype.itemsize

    def cross_kv_bytes(self, cross_columns: int) -> int:
        """Bytes of one document's image KV in the cross-attention layers (Mllama)."""
        per_column = 2 * len(self.cross_layers) * self.text.config.num_key_value_heads * self.head_dim
        return cross_columns * per_column * self.dtype.itemsize

    def rotary(self, hidden: torch.Tensor, rotary_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of text positions. Some releases' 3-D rotary (Qwen2.5-VL) return one table per axis,
        (3, rows, tokens, dim), merged in attention; text tokens sit at the same position on every axis, so
        any axis is the merged table."""
        cos, sin = self.text.rotary_emb(hidden, rotary_ids)
        return (cos[0], sin[0]) if cos.dim() == 4 else (cos, sin)

    def layers(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: Sequence[torch.Tensor],
               values: Sequence[torch.Tensor], attend: Callable, cross: Optional[tuple[torch.Tensor, torch.Tensor]]
               ) -> torch.Tensor:
        """Every decoder layer over `hidden` (rows, tokens, width): self-attention layers write their KV
        and attend through `attend`; cross-attention layers read the image KV cached at prefill with
        `cross` = (bias over image columns, text rows that see the image), the same for every token.
        Each layer hands its last residual term to the next, which adds it as it normalises (`residual_norm`)."""
        pending = None
        for index, layer in enumerate(self.text.layers):
            if index in self.cross_layers:
                assert cross is not None, "a cross-attention layer without the image bias"
                hidden, pending = cross_layer(layer, hidden, pending, keys[index], values[index], *cross)
            else:
                hidden, pending = self_layer(layer, hidden, pending, cos, sin, keys[index], values[index], attend,
                                             self.positions, self.merged[index])
        return hidden if pending is None else hidden + pending

    def last_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits of each row's last position."""
        return self.lm_head(self.text.norm(hidden[:, -1:]))[:, -1].float()


def merge_layers(text: torch.nn.Module, cross_layers: set[int]) -> list[Optional[MergedLayer]]:
    """Each self-attention layer's projections merged (None: a cross-attention layer, or one left as it was).
    The replaced weights go back to the device layer by layer: the extra memory is one layer's, never the
    model's; where even that does not fit, the remaining layers keep their modules."""
    merged: list[Optional[MergedLayer]] = [None] * len(text.layers)
    for index, layer in enumerate(text.layers):
        if index in cross_layers:
            continue
        try:
            merged[index] = merge_layer(layer)
        except torch.OutOfMemoryError:
            log.warning("no memory to merge the projections of layers %d and on: they run as they are", index)
            break
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the old weights' blocks, which no later allocation of these sizes reuses
    return merged


def residual_norm(norm: torch.nn.Module, hidden: torch.Tensor,
                  pending: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden + pending, norm of it): a residual add and the norm after it, one kernel where the fused
    kernels run (the same rounding as the add and the norm apart)."""
    if pending is None:
        return hidden, norm(hidden)
    if fused.runs_on(hidden.dtype, hidden.device) and fused.is_rms_norm(norm):
        return fused.add_rms_norm(hidden, pending, norm.weight, norm.variance_epsilon)
    hidden = hidden + pending
    return hidden, norm(hidden)


def self_layer(layer: torch.nn.Module, hidden: torch.Tensor, pending: Optional[torch.Tensor], cos: torch.Tensor,
               sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, attend: Callable, positions: Callable,
               merged: Optional[MergedLayer] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoder layer over `hidden` + `pending` (rows, tokens, width; the last layer's MLP output, not yet
    added); `attend` writes the KV and attends; `positions` normalises and rotates query and key
    (`query_key_positions`); `merged`: its projections as one product each (merged.py).
    -> (hidden after attention, this layer's MLP output: the next one's pending)."""
    attn = layer.self_attn
    hidden, x = residual_norm(layer.input_layernorm, hidden, pending)
    rows, tokens, head_dim = hidden.shape[0], hidden.shape[1], keys.shape[-1]
    query, key, value = (p.view(rows, tokens, -1, head_dim) for p in query_key_value(attn, x, merged))
    query, key = positions(attn, query, key, cos, sin)
    out = attn.o_proj(attend(query, key, value.transpose(1, 2), keys, values, attn.scaling))
    hidden, x = residual_norm(layer.post_attention_layernorm, hidden, out)
    return hidden, mlp_output(layer.mlp, x, merged)


def cross_layer(layer: torch.nn.Module, hidden: torch.Tensor, pending: Optional[torch.Tensor], keys: torch.Tensor,
                values: torch.Tensor, cross_bias: torch.Tensor,
                cross_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mllama's gated cross-attention to the image KV cached at prefill, for (rows, tokens, width) hidden
    states (+ `pending`, as `self_layer`) whose tokens all see the image as the row's last prompt token did
    (generate's rule for new tokens): `cross_bias` (rows, 1, 1, image columns), `cross_rows` (rows, 1, 1),
    0 where a row sees no image. -> (hidden after attention, the gated MLP output)."""
    attn = layer.cross_attn
    hidden, x = residual_norm(layer.input_layernorm, hidden, pending)
    rows, tokens = hidden.shape[0], hidden.shape[1]
    query = attn.q_norm(attn.q_proj(x).view(rows, tokens, -1, attn.head_dim).transpose(1, 2))
    image = cross_bias.shape[-1]
    out = cross_attention(query, keys[:, :, :image], values[:, :, :image], cross_bias[:rows], attn.scaling)
    gated = layer.cross_attn_attn_gate.tanh() * attn.o_proj(out)
    hidden, x = residual_norm(layer.post_attention_layernorm, hidden, gated)
    return hidden, layer.cross_attn_mlp_gate.tanh() * (layer.mlp(x) * cross_rows[:rows])


def cross_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """Attention to the image KV; bias (rows, 1, 1, columns). Where the Triton kernels run: the decode
    kernel for a step, the turn kernel without its causal bound for a turn (both skip the columns of
    padded tiles and keep no score matrix). Otherwise `grouped_attention` a few rows at a time: a
    turn's scores over thousands of image columns (rows x heads x tokens x columns) would not fit at
    once; a decode step's fit in one block."""
    rows, heads, tokens = query.shape[:3]
    if attention.available(query):
        if tokens == 1:
            return attention.decode_attention(query, keys, values, bias[:, 0, 0], scale, keys.shape[2])
        return attention.image_attention(query, keys, values, bias[:, 0, 0], scale)
    step = max(1, CROSS_SCORES // (heads * tokens * keys.shape[2]))
    if step >= rows:
        return attention.grouped_attention(query, keys, values, bias, scale)
    return torch.cat([attention.grouped_attention(query[a : a + step], keys[a : a + step], values[a : a + step],
                                                  bias[a : a + step], scale) for a in range(0, rows, step)])


def decode_attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keys: torch.Tensor,
                  values: torch.Tensor, scale: float, *, column: torch.Tensor, bias: torch.Tensor,
                  columns: int, first: torch.Tensor) -> torch.Tensor:
    """One decode step: the new token's KV written at `column`, attention over columns [0, columns)
    (the kernel walks each row's columns [first, column] only)."""
    keys.index_copy_(2, column, key)
    values.index_copy_(2, column, value)
    if attention.available(query):
        return attention.decode_attention(query, keys, values, bias, scale, columns, bounds=(first, column))
    return attention.grouped_attention(query, keys[:, :, :columns], values[:, :, :columns],
                                       bias[:, None, None, :columns], scale)


def turn_attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor, scale: float, *, bias: torch.Tensor, start: int) -> torch.Tensor:
    """A follow-up turn: its tokens' KV written from column `start`, causal attention over everything before."""
    tokens = query.shape[2]
    keys[:, :, start : start + tokens] = key
    values[:, :, start : start + tokens] = value
    if attention.available(query):
        return attention.turn_attention(query, keys, values, bias, start, scale)
    end = start + tokens
    return attention.grouped_attention(query, keys[:, :, :end], values[:, :, :end],
                                       attention.turn_bias(bias, start, tokens), scale)
