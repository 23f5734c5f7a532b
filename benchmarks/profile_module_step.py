"""Split of one module-level LSTM training step (AG News shape) by thread CPU time, 1 thread:
    python benchmarks/profile_module_step.py   (table rows of benchmarks/results/module-step-profile-cpu.md)"""
import sys, time, statistics, torch
from torch.nn.utils.rnn import pack_padded_sequence
sys.path.insert(0, "benchmarks")
import fastrnn
from bench_module_cpu import make_batches, SHAPES
torch.set_num_threads(1)
batches = make_batches(SHAPES["agnews"], 4, 0)
m = fastrnn.LSTM(64, 32, batch_first=True)
W, Wi, bi, bh = m.weight_hh_l0, m.weight_ih_l0, m.bias_ih_l0, m.bias_hh_l0
fwd = torch.ops.fastrnn.lstm_forward.default
bwd = torch.ops.fastrnn.lstm_backward.default
pre = []
for x, lengths in batches:
    p = pack_padded_sequence(x.detach(), lengths, batch_first=True, enforce_sorted=False)
    h0 = torch.zeros(16, 32)
    proj = torch.addmm(bi, p.data, Wi.t()).detach()
    out, h, c, ws = fwd(proj, p.batch_sizes, W.detach(), bh.detach(), h0, h0, False, True)
    g = torch.randn(out.shape[0], 4 * 32)
    pre.append((x, lengths, p, h0, proj, out, ws, g))
def t(fn, reps=15, n=10):
    for _ in range(3): fn()
    res = []
    for _ in range(reps):
        s = time.thread_time()
        for _ in range(n): fn()
        res.append((time.thread_time() - s) / n / len(pre) * 1e6)
    return statistics.median(res)
def each(f):
    def run():
        for b in pre: f(*b)
    return run
with torch.no_grad():
    parts = {
    "pack_padded_sequence forward (no grad)": each(lambda x, l, *r: pack_padded_sequence(x, l, batch_first=True, enforce_sorted=False)),
    "input projection forward (addmm)": each(lambda x, l, p, *r: torch.addmm(bi, p.data, Wi.t())),
    "recurrence forward kernel (op, keep_workspace)": each(lambda x, l, p, h0, proj, *r: fwd(proj, p.batch_sizes, W, bh, h0, h0, False, True)),
    "recurrence backward kernel incl. grad_weight_hh/bias_hh (op)": each(lambda x, l, p, h0, proj, out, ws, g: bwd(out, h0, h0, p.batch_sizes, W, h0, h0, out, ws, False)),
    "input projection backward: grad_x = dgx @ W_ih": each(lambda x, l, p, h0, proj, out, ws, g: g.mm(Wi)),
    "input projection backward: grad_W_ih = dgx^T @ x, grad_b_ih": each(lambda x, l, p, h0, proj, out, ws, g: (g.t().mm(p.data), g.sum(0))),
    }
    res = {k: t(f) for k, f in parts.items()}
def pack_train():
    for x, l, *r in pre:
        p = pack_padded_sequence(x, l, batch_first=True, enforce_sorted=False); p.data.sum().backward()
res["pack_padded_sequence forward+backward (grad)"] = t(pack_train)
def step():
    for x, l, *r in pre:
        out, (h, c) = m(pack_padded_sequence(x, l, batch_first=True, enforce_sorted=False)); (out.data.mean() + h.mean()).backward()
res["whole user step (module, fwd+bwd)"] = t(step)
def step_nograd():
    with torch.no_grad():
        for x, l, *r in pre:
            m(pack_padded_sequence(x, l, batch_first=True, enforce_sorted=False))
res["whole user step, inference"] = t(step_nograd)
for k, v in res.items(): print(f"| {k} | {v:.0f} |")
