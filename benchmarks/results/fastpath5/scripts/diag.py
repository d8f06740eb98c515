"""Why test_cuda_graph_decode_gives_the_plain_path_tokens[qwen2_5_vl] failed: for each family and each way
of making images (on the GPU, on the host), do the plain and static engines agree, and where they do not,
how close the two tokens' logits were (a near-tie in fp32: different kernels may pick either)."""
import sys
import torch
sys.path.insert(0, "tests")
from test_models_engine import requests
from docvlm.models import ModelSpec, build_engine, load_model
from docvlm.models.tiny import ensure_tiny_model, tiny_model_path
import os
DEV = os.environ.get("DEV", "cuda")
torch.backends.cudnn.allow_tf32 = False

def margin(engine, request, history):
    inputs = dict(engine.encode([request]))
    extra = torch.tensor([history], dtype=torch.long, device=DEV)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    if "cross_attention_mask" in inputs:
        m = inputs["cross_attention_mask"]; inputs["cross_attention_mask"] = torch.cat([m, m[:, -1:].expand(-1, len(history), -1, -1)], dim=1)
    with torch.no_grad():
        logits = engine.model(**inputs).logits[0, -1].float()
    top = logits.topk(2)
    return top.values[0].item() - top.values[1].item(), top.indices.tolist()

for family in sys.argv[1:]:
    for on_device in (True, False):
        spec = ModelSpec(family=family, path=str(ensure_tiny_model(family, tiny_model_path(family))), dtype="float32", max_tiles=4, engine="hf")
        plain = load_model(spec, DEV)
        static = build_engine("static", plain.model, plain.processor, spec, torch.device(DEV))
        plain.chat.images_on_device = static.chat.images_on_device = on_device
        outputs, states = {}, {}
        for name, engine in (("plain", plain), ("static", static)):
            batch = requests([5, 30, 7])
            first = engine.generate(batch, keep_state=True)
            prompts = ["GST_AMOUNT?", "TOTAL?", "ROWS"]
            second = engine.continue_(first.state, prompts, [40, 6, 300], keep_state=True)
            outputs[name] = (batch, first, second, prompts)
        pb, pf, ps, prompts = outputs["plain"]; _, sf, ss, _ = outputs["static"]
        same1 = [r.token_ids for r in pf.replies] == [r.token_ids for r in sf.replies]
        same2 = [r.token_ids for r in ps.replies] == [r.token_ids for r in ss.replies]
        print(f"{family} images on device={on_device}: first turn same {same1}, second turn same {same2}")
        for row in range(3):
            a, b = ps.replies[row].token_ids, ss.replies[row].token_ids
            if a == b:
                continue
            j = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            history = pf.replies[row].token_ids + plain.turn_ids(prompts[row], pf.state.ended_with_turn_end[row]) + a[:j]
            gap, top2 = margin(plain, pb[row], history)
            print(f"  row {row}: first difference at token {j}: plain {a[j:j+1]} static {b[j:j+1]}; full-forward top-2 {top2}, logit gap {gap:.2e}")
