"""Why the fused text rotary differs from transformers' on the GPU (bf16): which side leaves the
each-product-rounded arithmetic?"""
import torch
from transformers.models.qwen3_vl import modeling_qwen3_vl as m
from docvlm.models.fused import text_rotary

g = torch.Generator().manual_seed(0)
rows, tokens, heads, kv, dim = 3, 1, 8, 2, 128
q = (torch.randn(rows, tokens, heads, dim, generator=g) * 3).cuda().bfloat16()
k = (torch.randn(rows, tokens, kv, dim, generator=g) * 3).cuda().bfloat16()
a = torch.randn(rows, tokens, dim // 2, generator=g) * 5
emb = torch.cat([a, a], -1)
cos, sin = emb.cos().cuda().bfloat16(), emb.sin().cuda().bfloat16()
from docvlm.models import fused
original = fused._norm_rotate_kernel
class Fusion:  # the kernel launched with fp fusion on (Triton's default), as before the fix
    def __getitem__(self, grid):
        launch = original[grid]
        return lambda *a, **kw: launch(*a, **{**kw, "enable_fp_fusion": True})
fused._norm_rotate_kernel = Fusion()
with_fusion = text_rotary(q, k, cos, sin)
fused._norm_rotate_kernel = original
got = text_rotary(q, k, cos, sin)
exp0 = m.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
print("fusion on: kernel==transformers", [torch.equal(a, b) for a, b in zip(with_fusion, exp0)])
print("fusion off: kernel==transformers", [torch.equal(a, b) for a, b in zip(got, exp0)])
from docvlm.models.text_rotary import fused_reproduces
for fam in (m.apply_rotary_pos_emb,):
    print("engine check (fusion off):", fused_reproduces(fam, 128, torch.bfloat16, q.device))
exp = m.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
def emul(x):  # each product rounded, then the sum, in torch fp32 ops
    x = x.transpose(1, 2).float(); c, s = cos[:, None].float(), sin[:, None].float()
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return ((x * c).bfloat16().float() + (rot * s).bfloat16().float()).bfloat16()
def fp32(x):
    x = x.transpose(1, 2).float(); c, s = cos[:, None].float(), sin[:, None].float()
    h = x.shape[-1] // 2
    return (x * c + torch.cat([-x[..., h:], x[..., :h]], -1) * s).bfloat16()
for name, gg, ee, x in (("q", got[0], exp[0], q), ("k", got[1], exp[1], k)):
    print(name, "layout", gg.shape, gg.stride(), ee.shape, ee.stride())
    print(name, "kernel==transformers", torch.equal(gg, ee), "differing", (gg != ee).sum().item(), "of", ee.numel())
    print(name, "transformers==emulated", torch.equal(ee, emul(x)), "kernel==emulated", torch.equal(gg, emul(x)))
    print(name, "transformers==fp32", torch.equal(ee, fp32(x)), "kernel==fp32", torch.equal(gg, fp32(x)))
    cpu = m.apply_rotary_pos_emb(x.transpose(1, 2).cpu(), x.transpose(1, 2).cpu(), cos.cpu(), sin.cpu())[0]
    print(name, "transformers cuda==cpu", torch.equal(ee.cpu(), cpu) if name == "q" else "-")
import inspect
f = m.apply_rotary_pos_emb
print("transformers rotary object", type(f), getattr(f, "__module__", None))
try:
    print(inspect.getsource(getattr(f, "__wrapped__", f))[-700:])
except Exception as error:
    print("no source:", error)
