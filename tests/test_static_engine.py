"""The static engine (owned decode loop over preallocated KV buffers) gives the SAME tokens as
transformers' `generate` (the "hf" engine) on the tiny fp32 models of every family: first turns,
follow-up turns, row selection, per-row budgets, end ids and forced lengths."""

import copy

import pytest
import torch

from docvlm.models import ModelSpec, Request, build_engine, load_model
from docvlm.models import adapter, decode_graphs, packing, static_engine
from docvlm.models.kv_buffers import COLUMN_STEP, row_bucket
from docvlm.models.packing import packs
from docvlm.models.static_engine import StaticEngine
from test_models_engine import FAMILIES, noise_image

CPU = torch.device("cpu")
SIZES = [(40, 40), (56, 112), (150, 40), (90, 90), (40, 160)]
PACKING = ["internvl", "qwen3_vl", "qwen2_5_vl"]  # families whose first turns pack


def batch(budgets: list[int], seed: int = 0) -> list[Request]:
    return [Request(noise_image(h, w, seed + i), f"Read document {i}: TOTAL_AMOUNT?", budget)
            for i, ((h, w), budget) in enumerate(zip(SIZES, budgets))]


@pytest.fixture(scope="module")
def pairs(tiny_models):
    """family -> (hf engine, static engine) over ONE model object (same weights)."""
    out = {}
    for family in FAMILIES:
        spec = ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4, engine="hf")
        hf = load_model(spec, CPU)
        # Each engine reads the end ids from the checkpoint's generation config, then replaces it.
        generation_config = copy.deepcopy(hf.model.generation_config)
        hf.model.generation_config = copy.deepcopy(generation_config)
        static = build_engine("static", hf.model, hf.processor, spec, CPU)
        hf.model.generation_config = generation_config
        out[family] = (hf, static)
    return out


def static_internvl(hf) -> StaticEngine:
    """A fresh static engine over the hf engine's InternVL model (buffers of its own)."""
    return build_engine("static", hf.model, hf.processor, ModelSpec(family="internvl", path="-", max_tiles=4), CPU)


def ids(result) -> list[list[int]]:
    return [reply.token_ids for reply in result.replies]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("force", [False, True])
def test_first_turn_same_tokens(pairs, family, force):
    hf, static = pairs[family]
    assert isinstance(static, StaticEngine) and not isinstance(hf, StaticEngine)
    budgets = [12, 3, 30, 1, 20]
    a = hf.generate(batch(budgets), force_length=force)
    b = static.generate(batch(budgets), force_length=force)
    assert ids(b) == ids(a)
    assert [r.finished for r in b.replies] == [r.finished for r in a.replies]
    assert [len(r.token_ids) for r in b.replies][:4] == ([12, 3, 30, 1] if force else [len(t) for t in ids(a)][:4])
    assert [r.text for r in b.replies] == [r.text for r in a.replies]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_qwen_rotary_positions_are_planned_in_the_prefetch_worker(pairs, family):
    """Qwen-VL's 3-D positions come with the prefetched inputs (made on the host, where reading ids and
    grid costs no GPU sync), equal to the model's own rule, and never reach the model as inputs."""
    _, static = pairs[family]
    request = batch([4])[0]
    made = static._first_turn_host([request])
    planned = {key for key in made if key.startswith(adapter.PLANNED)}
    assert planned and all(made[key].device.type == "cpu" for key in planned)
    positions, deltas = static.model.model.get_rope_index(made["input_ids"], made["mm_token_type_ids"],
                                                          image_grid_thw=made["image_grid_thw"])
    assert torch.equal(made[f"{adapter.PLANNED}positions"], positions)
    assert torch.equal(made[f"{adapter.PLANNED}rope_deltas"], deltas)
    assert not planned & set(static_engine.model_inputs(made))


@pytest.mark.parametrize("family", FAMILIES)
def test_conversation_select_and_follow_ups_same_tokens(pairs, family):
    """detect -> next turn for every row -> a subset continues: the pipeline's shared-prefill flow."""
    hf, static = pairs[family]
    results = {}
    for name, engine in (("hf", hf), ("static", static)):
        first = engine.generate(batch([6, 6, 6, 6, 6], seed=3), keep_state=True)
        second = engine.continue_(first.state, [f"Fields of row {i}?" for i in range(5)], [9, 25, 4, 25, 12],
                                  keep_state=True)
        kept = engine.select(second.state, [1, 3, 4])
        third = engine.continue_(kept, ["Now the rows.", "Rows please.", "And rows."], [15, 15, 15])
        results[name] = (ids(first), ids(second), ids(third))
    assert results["static"] == results["hf"]


def test_packs_are_consecutive_and_bounded():
    assert packs([5, 5, 5], 10) == [[0, 1], [2]]
    assert packs([12, 3, 4, 20, 1], 10) == [[0], [1, 2], [3], [4]]  # a longer document goes alone
    assert packs([], 10) == []


@pytest.mark.parametrize("family", PACKING)
@pytest.mark.parametrize("pack", ["one", "some", "all"])
def test_packed_prefill_same_tokens(pairs, monkeypatch, family, pack):
    """InternVL and Qwen-VL pack first turns into one sequence (positions restart, Qwen-VL's 3-D ones
    per document; attention kept per document): the same tokens as transformers' padded batch, first
    turn and follow-up (Qwen-VL: each row's rope delta), whether each document goes alone, some share
    a pack, or all share one."""
    hf, static = pairs[family]
    assert static.packs_prefill
    requests = batch([7, 3, 15, 9, 11], seed=5)
    lengths = [static.encode([request])["input_ids"].shape[1] for request in requests]
    limit = {"one": 1, "some": 2 * max(lengths), "all": sum(lengths)}[pack]  # "some": two or more a pack
    monkeypatch.setattr(static_engine, "PACK_TOKENS", limit)
    calls = []
    original = static._prefill_pack
    monkeypatch.setattr(static, "_prefill_pack", lambda singles, *a: calls.append(len(singles)) or original(singles, *a))
    if hasattr(static.model.model, "rope_deltas"):  # Qwen-VL: no stale deltas from the last batch to lean on
        static.model.model.rope_deltas = torch.zeros(5, 1, dtype=torch.long)
    first = static.generate(requests, keep_state=True)
    assert sum(calls) == 5 and len(calls) == {"one": 5, "all": 1}.get(pack, len(calls))
    if pack == "some":
        assert 1 < len(calls) < 5, calls
    prompts = [f"Fields {i}?" for i in range(5)]
    follow = static.continue_(first.state, prompts, [6] * 5)
    reference = hf.generate(requests, keep_state=True)
    assert ids(first) == ids(reference)
    assert ids(follow) == ids(hf.continue_(reference.state, prompts, [6] * 5))


def test_packed_qwen2_5_vision_attends_within_windows_in_one_call(pairs, monkeypatch):
    """A Qwen2.5-VL pack's vision tower runs the varlen attention: one call a layer for all of the pack's
    images (windows of patches in windowed layers, whole images in its full-attention layers), not an
    SDPA call a window; tokens stay transformers'. Qwen3-VL's runs the fastest of its ways (one call a
    layer with its images' bounds; on CPU transformers' SDPA an image)."""
    from transformers import AttentionInterface

    requests = batch([4, 4, 4, 4, 4], seed=7)
    monkeypatch.setattr(static_engine, "PACK_TOKENS", 100_000)
    seen, fastest_seen = [], []

    def counted(*args, **kwargs):
        seen.append(kwargs["cu_seq_lens_q"].tolist())
        return packing.varlen_vision_attention(*args, **kwargs)

    def counted_fastest(*args, **kwargs):
        fastest_seen.append(kwargs["cu_seq_lens_q"].tolist())
        return packing.fastest_vision_attention(*args, **kwargs)

    AttentionInterface.register(packing.VISION_VARLEN, counted)
    AttentionInterface.register(packing.VISION_FASTEST, counted_fastest)
    try:
        results = {family: pairs[family][1].generate(requests) for family in ("qwen2_5_vl", "qwen3_vl")}
    finally:
        AttentionInterface.register(packing.VISION_VARLEN, packing.varlen_vision_attention)
        AttentionInterface.register(packing.VISION_FASTEST, packing.fastest_vision_attention)
    qwen3 = pairs["qwen3_vl"][1]
    qwen3_patches = [int(qwen3.encode([r])["image_grid_thw"].prod()) for r in requests]
    assert fastest_seen == [[sum(qwen3_patches[:i]) for i in range(6)]] * qwen3.model.config.vision_config.depth
    hf, static = pairs["qwen2_5_vl"]
    vision = static.model.config.vision_config
    assert len(seen) == vision.depth  # one call a layer, none from Qwen3-VL
    patches = [int(single["image_grid_thw"].prod()) for single in (static.encode([r]) for r in requests)]
    images = [sum(patches[:i]) for i in range(6)]
    for layer, bounds in enumerate(seen):
        if layer in vision.fullatt_block_indexes:
            assert bounds == images
        else:  # windows: finer bounds that still split at every image
            assert set(images) <= set(bounds) and len(bounds) > len(images)
    assert vision._attn_implementation != packing.VISION_VARLEN  # switched back
    assert qwen3.model.config.vision_config._attn_implementation != packing.VISION_FASTEST
    for family, result in results.items():
        assert ids(result) == ids(pairs[family][0].generate(requests))


@pytest.mark.parametrize("limit", [1, 100_000])
def test_vision_tower_runs_for_several_documents_a_pass(pairs, monkeypatch, limit):
    """Llama-3.2-Vision's vision tower takes several documents' tiles at once (up to VISION_BATCH_TOKENS)
    and the group's documents of one prompt length are prefilled in ONE text forward: the vision tower
    runs once per group, never again inside a text forward, and the tokens are transformers'."""
    hf, static = pairs["mllama"]
    monkeypatch.setattr(static_engine, "VISION_BATCH_TOKENS", limit)
    documents, order, text_rows = [], [], []
    model = static.model.model
    hooks = [model.vision_model.register_forward_hook(
                 lambda module, args, kwargs, out: documents.append(kwargs["pixel_values"].shape[0]) or
                 order.append("vision"), with_kwargs=True),
             model.language_model.register_forward_hook(
                 lambda module, args, kwargs, out: text_rows.append(kwargs["input_ids"].shape[0]) or
                 order.append("text"), with_kwargs=True)]
    requests = batch([5, 8, 3, 6, 7], seed=11)
    requests[2] = Request(requests[2].image, requests[2].prompt + " And the due date, please?", 3)
    try:
        ours = static.generate(requests)
    finally:
        for hook in hooks:
            hook.remove()
    assert documents == ([1] * 5 if limit == 1 else [5])
    # one group encoded at a time, then its documents prefilled; a longer prompt breaks the run
    assert order == (["vision", "text"] * 5 if limit == 1 else ["vision", "text", "text", "text"]), order
    assert text_rows == ([1] * 5 if limit == 1 else [2, 1, 2])
    assert ids(ours) == ids(hf.generate(requests))


def test_cross_attention_in_blocks_of_rows_is_the_same(pairs, monkeypatch):
    """A follow-up turn's cross-attention scores (rows x heads x tokens x image columns) go a few rows at a
    time so they fit in memory; the tokens stay transformers'."""
    from docvlm.models import text_layers

    hf, static = pairs["mllama"]
    blocks = []
    original = text_layers.attention.grouped_attention

    def counted(query, keys, *args):
        if keys.shape[2] == static.adapter.cross_columns():  # the image KV: a cross-attention layer
            blocks.append(query.shape[0])
        return original(query, keys, *args)

    prompts, budgets = [f"Row {i} fields?" for i in range(4)], [6, 4, 8, 5]

    def conversation(engine):
        first = engine.generate(batch([3, 3, 3, 3], seed=13), keep_state=True)
        return ids(engine.continue_(first.state, prompts, budgets))

    expected = conversation(hf)
    monkeypatch.setattr(text_layers, "CROSS_SCORES", 1)  # one row a block
    monkeypatch.setattr(text_layers.attention, "grouped_attention", counted)
    assert conversation(static) == expected
    assert blocks and set(blocks) == {1}


def test_graph_buckets_and_buffer_reuse(pairs):
    """Rows and columns round up to buckets; a second batch reuses the buffers; old states are refused."""
    hf, _ = pairs["internvl"]
    static = static_internvl(hf)
    first = static.generate(batch([4, 4]), keep_state=True)
    buffers = static.buffers
    assert buffers.rows == row_bucket(2) == 2 and buffers.columns % COLUMN_STEP == 0
    static.generate(batch([4, 4, 4]))  # more rows: bucket 4, the buffers grow
    assert static.buffers.rows == 4
    static.generate(batch([4]))  # fewer rows: the same buffers serve
    assert static.buffers.rows == 4
    with pytest.raises(ValueError, match="earlier batch"):
        static.continue_(first.state, ["more", "more"], [2, 2])
    assert row_bucket(3) == 4 and row_bucket(5) == 8 and row_bucket(300) == 320


def test_decode_attends_over_the_whole_buffer_where_the_kernels_run(pairs, monkeypatch):
    """With the Triton kernels, ONE graph per row bucket: every step attends over all the buffer's
    columns (the masked tail skipped), so no prompt length needs a capture of its own. Same tokens."""
    hf, _ = pairs["internvl"]
    static = static_internvl(hf)
    seen: list[int] = []
    replay = static.decoder.replay
    monkeypatch.setattr(static.decoder, "replay", lambda rows, columns: (seen.append(columns), replay(rows, columns))[1])
    budgets = [12, 3, 30]
    bucketed = ids(static.generate(batch(budgets), keep_state=True))  # kept: columns reserved past the turn
    assert max(seen) < static.buffers.columns and len(set(seen)) >= 1  # 256-column buckets on the matmul path
    seen.clear()
    monkeypatch.setattr(decode_graphs.attention, "runs", lambda dtype, device, head_dim: True)
    monkeypatch.setattr(decode_graphs.attention, "available", lambda query: False)  # CPU: the matmuls compute it
    whole = ids(static.generate(batch(budgets), keep_state=True))
    assert set(seen) == {static.buffers.columns}
    assert whole == bucketed == ids(hf.generate(batch(budgets)))


def test_buffers_grow_for_a_long_follow_up(pairs):
    """A follow-up longer than the reserved columns grows the buffers and keeps the conversation."""
    hf, static = pairs["internvl"]
    long_prompt = " ".join(["word"] * 700)
    results = {}
    for name, engine in (("hf", hf), ("static", static)):
        first = engine.generate(batch([3, 3]), keep_state=True)
        second = engine.continue_(first.state, [long_prompt, long_prompt], [40, 40], keep_state=True)
        third = engine.continue_(second.state, [long_prompt, "short"], [1500, 8], force_length=True)
        results[name] = (ids(first), ids(second), ids(third))
    assert results["static"] == results["hf"]


def test_a_selected_few_grow_into_buffers_of_their_own_rows(pairs):
    """Found on 4xH100: a mixed batch's statements outgrew the reserved columns after a long extraction
    turn, and the growth allocated the WHOLE batch's rows beside the old buffers: out of memory. Now only
    the selected rows move; the next batch gets full-width buffers again. Same tokens as transformers."""
    hf, static = pairs["internvl"]
    long_prompt = " ".join(["word"] * 700)
    results = {}
    for name, engine in (("hf", hf), ("static", static)):
        first = engine.generate(batch([3, 3, 3, 3, 3]), keep_state=True)
        kept = engine.select(first.state, [1, 4])
        grown = engine.continue_(kept, [long_prompt, "short"], [1500, 8], force_length=True)
        if engine is static:
            assert static.buffers.rows == row_bucket(2) == 2
        again = engine.generate(batch([3, 3, 3, 3, 3], seed=4))
        if engine is static:
            assert static.buffers.rows == row_bucket(5)
        results[name] = (ids(first), ids(grown), ids(again))
    assert results["static"] == results["hf"]


def test_a_new_batch_frees_the_old_buffers_before_allocating_bigger_ones(pairs, monkeypatch):
    """A batch whose prompts need more columns than the last one's buffers: the old buffers are gone
    before the new ones are allocated (side by side, two full batches' KV would not fit on the GPU)."""
    import gc
    import weakref

    hf, _ = pairs["internvl"]
    static = static_internvl(hf)
    static.generate(batch([3, 3]))
    old = weakref.ref(static.buffers.keys[0])
    old_columns = static.buffers.columns
    real_allocate, seen = static.kv.allocate, []

    def allocate(*args, **kwargs):
        gc.collect()
        seen.append(old() is None)
        return real_allocate(*args, **kwargs)

    monkeypatch.setattr(static.kv, "allocate", allocate)
    static.generate(batch([old_columns, 3]))  # a budget past the old columns
    assert seen == [True] and static.buffers.columns > old_columns


def test_out_of_memory_frees_the_buffers_so_the_split_retry_fits(pairs, monkeypatch):
    """An OOM in a batch of 4 frees the KV buffers; the pipeline's halves then run and lose nothing."""
    from docvlm.pipeline.batching import run_in_batches

    hf, _ = pairs["internvl"]
    static = static_internvl(hf)
    real_step = static.decoder.step

    def step(rows: int, columns: int) -> None:
        if rows >= 4:  # "the GPU" holds at most 2 rows of decode
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        real_step(rows, columns)

    monkeypatch.setattr(static.decoder, "step", step)
    requests = batch([5, 5, 5, 5])
    replies, failed, sizes = {}, [], []

    def run(rows):
        sizes.append(len(rows))
        for index, reply in zip(rows, static.generate([requests[i] for i in rows]).replies):
            replies[index] = reply.token_ids

    run_in_batches([0, 1, 2, 3], 4, run, lambda item, err: failed.append(item))
    assert sizes == [4, 2, 2] and not failed
    assert static.buffers is not None and static.buffers.rows == 2  # reallocated for the halves
    assert [replies[i] for i in range(4)] == ids(hf.generate(requests))


def test_prefetched_inputs_are_used_once_and_stale_ones_dropped(pairs):
    """`prepare` runs the processor ahead; generate uses it (same tokens); an unused prefetch is dropped."""
    hf, _ = pairs["internvl"]
    static = static_internvl(hf)
    first, second = batch([6, 6]), batch([6, 6], seed=7)
    static.prepare(first)
    assert len(static.prefetch.prepared) == 2
    static.prepare(second)  # the batch after: prefetched while `first` runs
    got = static.generate(first)
    assert len(static.prefetch.prepared) == 2  # `first` consumed, `second` kept
    assert ids(got) == ids(hf.generate(first))
    third = batch([6], seed=11)
    static.prepare(third)  # `second` never runs (its documents failed before): dropped at the next batch
    static.generate(third)
    assert not static.prefetch.prepared


@pytest.mark.parametrize("family", FAMILIES)
def test_follow_up_turns_run_our_layer_loop_in_row_chunks(pairs, monkeypatch, family):
    """Every family's follow-ups skip generate (Llama-3.2-Vision's cross-attention layers too): our layer
    loop over the buffers, rows in chunks (one row a chunk here) when a turn has many tokens; the same
    tokens as transformers."""
    hf, static = pairs[family]
    prompts, budgets = [f"Row {i} fields?" + " more" * i for i in range(4)], [5, 9, 3, 7]

    def conversation(engine):
        first = engine.generate(batch([4, 4, 4, 4], seed=9), keep_state=True)
        return ids(first), ids(engine.continue_(first.state, prompts, budgets))

    expected = conversation(hf)
    monkeypatch.setattr(static_engine, "TURN_CHUNK_TOKENS", 1)
    monkeypatch.setattr(static.model, "generate", None)  # (the shared model) a follow-up through generate fails
    assert conversation(static) == expected


def test_rotary_for_text_positions_matches_the_models_own(pairs, monkeypatch):
    """The plain rotation (for modules without `apply_rotary_pos_emb`) is transformers' own; a per-axis
    (3, rows, tokens, dim) table of text positions reduces to any one axis."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

    from docvlm.models.text_rotary import apply_rotary

    _, static = pairs["qwen2_5_vl"]
    positions = torch.arange(6)[None].expand(2, -1)
    hidden = torch.zeros(2, 6, 64)
    cos, sin = static.stack.rotary(hidden, static.adapter.rotary_ids(positions))
    query, key = torch.randn(2, 4, 6, 16), torch.randn(2, 2, 6, 16)
    for ours, theirs in zip(apply_rotary(query, key, cos, sin),
                            modeling_qwen2_5_vl.apply_rotary_pos_emb(query, key, cos, sin)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    tables = torch.stack([cos] * 3), torch.stack([sin] * 3)
    monkeypatch.setattr(static.stack.text.rotary_emb, "forward", lambda *args: tables)
    per_axis = static.stack.rotary(hidden, static.adapter.rotary_ids(positions))
    assert all(torch.equal(a, b) for a, b in zip(per_axis, (cos, sin)))


def test_vision_attention_with_zero_padded_head_dims_is_the_same_attention():
    """`fastest_vision_attention`'s padded way (timed on CUDA) is the per-image attention: the zero columns
    add nothing to q.k and the kept output columns are the unpadded ones (fp64, any head dim)."""
    query, key, value = (torch.randn(1, 3, 23, 9, dtype=torch.float64) for _ in range(3))
    starts = torch.tensor([0, 10, 23], dtype=torch.int32)
    module = torch.nn.Module()
    module.is_causal, module.training = False, False
    reference = packing._sdpa_each(module, query, key, value, starts, causal=False, scaling=9**-0.5)
    padded = packing._padded_each(module, query, key, value, starts, 9**-0.5, 16)
    assert padded.shape == reference.shape == (1, 23, 3, 9)
    torch.testing.assert_close(padded, reference)


def test_vision_attention_way_is_chosen_per_size_of_the_longest_image(monkeypatch):
    """Which way is fastest depends on the images' size (flash tied cuDNN on small images, lost on large
    ones): `fastest` is asked again for each power-of-two bucket of the longest image, with every way."""
    keys, offered = [], set()

    def pick(what, key, ways, device):
        keys.append(key)
        offered.update(ways)
        return ways["SDPA an image"]()

    monkeypatch.setattr(packing, "runs_flash_varlen", lambda query: True)
    monkeypatch.setattr(packing, "fastest", pick)
    module = torch.nn.Module()
    module.is_causal, module.training = False, False
    for longest in (30, 20, 200):
        query, key, value = (torch.randn(1, 2, 2 * longest, 8) for _ in range(3))
        starts = torch.tensor([0, longest, 2 * longest], dtype=torch.int32)
        packing.fastest_vision_attention(module, query, key, value, None, scaling=0.3, cu_seq_lens_q=starts,
                                         max_length_q=longest)
    query, key, value = (torch.randn(1, 2, 230, 8) for _ in range(3))  # no longest given: from the bounds
    packing.fastest_vision_attention(module, query, key, value, None, scaling=0.3,
                                     cu_seq_lens_q=torch.tensor([0, 30, 230], dtype=torch.int32))
    assert keys[0] == keys[1] != keys[2] == keys[3]  # 30 and 20 share a bucket, 200 does not
    assert offered == {"SDPA an image", "varlen flash"} | {
        f"SDPA an image, head dim padded to {width}" for width in packing.PADDED_HEAD_DIMS}


def test_buffers_reserve_the_planned_later_turns(pairs):
    """A kept conversation's buffers hold its first turn plus the tokens its requests say later turns add
    (the default reserve where one does not say); a conversation not kept reserves nothing. A turn
    within the plan runs in place; tokens as transformers'."""
    from docvlm.models.kv_buffers import FOLLOW_UP_COLUMNS, round_up

    hf, _ = pairs["internvl"]
    static = static_internvl(hf)
    planned = [Request(r.image, r.prompt, r.max_new_tokens, later_tokens=300) for r in batch([4, 4])]
    first = static.generate(planned, keep_state=True)
    width = first.state.ids.shape[1] - 1  # prompt + the turn's tokens (the cache holds all but the last)
    assert static.buffers.columns == round_up(width + 300, COLUMN_STEP)
    allocations = []
    static.kv.allocate = lambda *args, **kwargs: allocations.append(args)  # a growth would fail the turn
    second = static.continue_(first.state, ["TOTAL?", "DATE?"], [20, 20])
    del static.kv.allocate
    assert allocations == []
    reference = hf.continue_(hf.generate(batch([4, 4]), keep_state=True).state, ["TOTAL?", "DATE?"], [20, 20])
    assert ids(second) == ids(reference) and ids(first) == ids(hf.generate(batch([4, 4])))

    static.release()
    static.generate(batch([4, 4]))
    assert static.buffers.columns == round_up(width, COLUMN_STEP)  # not kept: no reserve
    static.release()
    static.generate(batch([4, 4]), keep_state=True)
    assert static.buffers.columns == round_up(width + FOLLOW_UP_COLUMNS, COLUMN_STEP)  # kept, nothing planned


def test_vision_layers_read_the_image_bounds_once_a_pack(pairs, monkeypatch):
    """Every layer of a Qwen3-VL pack's vision tower slices its images by the same bounds: they are read to
    the host once (the language model's document bounds, on CPU, once too) (a read a layer held the GPU idle, 27 times a pack on an H100), and read again only for
    another tensor or one changed in place."""
    starts = torch.tensor([0, 3, 7], dtype=torch.int32)
    first = packing.host_bounds(starts)
    assert first == [0, 3, 7] and packing.host_bounds(starts) is first
    starts[1] = 4
    assert packing.host_bounds(starts) == [0, 4, 7]
    assert packing.host_bounds(torch.tensor([0, 5], dtype=torch.int32)) == [0, 5]

    requests = batch([4, 4, 4], seed=3)
    monkeypatch.setattr(static_engine, "PACK_TOKENS", 100_000)
    read = packing.host_bounds
    results: list[list[int]] = []
    monkeypatch.setattr(packing, "host_bounds", lambda tensor: (results.append(read(tensor)), results[-1])[1])
    hf, static = pairs["qwen3_vl"]
    assert ids(static.generate(requests)) == ids(hf.generate(requests))
    config = static.model.config
    # the vision tower's layers slice images, then (on CPU) the language model's slice documents
    assert len(results) == config.vision_config.depth + config.text_config.num_hidden_layers
    assert len({id(bounds) for bounds in results}) == 2  # one host read for each
