"""Kernels one decode step of a Qwen3 decoder layer launches on the static engine's fused path (each aten
op that makes a kernel, each Triton launch), the layer inside the stack (the last layer's MLP output still
to add), its projections separate and merged. Run in a process of its own under TRITON_INTERPRET=1
(test_fused.py): prints "separate N merged M"."""

import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Qwen3Config
from transformers.models.qwen3 import modeling_qwen3

import triton.runtime.interpreter as interpreter
from docvlm.models.fused import fused_kernels
from docvlm.models.merged import merge_layer
from docvlm.models.text_layers import decode_attend, self_layer
from docvlm.models.text_rotary import query_key_positions

VIEWS = {"view", "_unsafe_view", "empty_like", "split", "split_with_sizes", "transpose", "t", "expand", "unsqueeze", "squeeze", "slice", "select",
         "as_strided", "empty", "empty_strided", "alias", "detach", "permute", "_reshape_alias", "lift_fresh"}


class KernelCount(TorchDispatchMode):
    """aten ops that launch a kernel (not views, not allocations), outside Triton launches, plus the launches."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.in_triton = 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.in_triton and func.overloadpacket.__name__ not in VIEWS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def decode_layer_kernels(merge: bool, rows: int = 4, columns: int = 64) -> int:
    dtype, dim = torch.float16, 16
    config = Qwen3Config(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=dim, num_hidden_layers=1)
    layer = modeling_qwen3.Qwen3DecoderLayer(config, 0).to(dtype)
    hidden, pending = (torch.randn(rows, 1, 64, dtype=dtype) for _ in range(2))
    keys, values = (torch.zeros(rows, 2, columns, dim, dtype=dtype) for _ in range(2))
    bias = torch.zeros(rows, columns, dtype=dtype)
    cos, sin = torch.ones(rows, 1, dim, dtype=dtype), torch.zeros(rows, 1, dim, dtype=dtype)
    positions = query_key_positions(modeling_qwen3.apply_rotary_pos_emb, use_fused=True)
    merged = merge_layer(layer) if merge else None
    column, first = torch.tensor([10]), torch.zeros(rows, dtype=torch.long)

    def attend(*args):
        return decode_attend(*args, column=column, bias=bias, columns=columns, first=first)

    counter = KernelCount()
    launch = interpreter.InterpretedFunction.run

    def counted(self, *args, **kwargs):
        counter.count += 1
        counter.in_triton = True
        try:
            return launch(self, *args, **kwargs)
        finally:
            counter.in_triton = False

    interpreter.InterpretedFunction.run = counted
    try:
        with torch.no_grad(), fused_kernels(layer, enabled=True), counter:
            self_layer(layer, hidden, pending, cos, sin, keys, values, attend, positions, merged)
    finally:
        interpreter.InterpretedFunction.run = launch
    return counter.count


if __name__ == "__main__":
    print(f"separate {decode_layer_kernels(False)} merged {decode_layer_kernels(True)}")
    sys.exit(0)
