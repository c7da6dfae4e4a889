"""Network benchmark: params, MACs, forward latency, train-step time and peak memory of several networks built
from the same nnU-Net plans, measured in one run and interleaved (see :mod:`.measure` for the conventions)."""
from __future__ import annotations

import gc
import platform
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..utils.tables import cell, table_lines
from ..utils.timing import forward_callable, interleaved_timings, summarize
from ..cpu.allocator import configure_cpu_allocator
from ..cpu.threads import ThreadTuner
from .entries import STOCK, ModelEntry
from .measure import FLOP_CONVENTION, count_flops, count_parameters, cuda_available, measure_peak_memory
from .plans_setup import BenchmarkSetup
from .train_step import TrainStep


def machine_info(threads: int) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": threads, "cuda": torch.cuda.get_device_name(0) if cuda_available() else None}


def run_network_benchmark(setup: BenchmarkSetup, entries: Sequence[ModelEntry], runs: int = 5, threads: int = 2,
                          warmup: int = 1, forward_batch: int = 1, train_batch: Optional[int] = None,
                          train_runs: int = 3, measure_train: bool = True, measure_memory: bool = True,
                          measure_cuda: Optional[bool] = None, tune_threads: bool = False,
                          progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Measure every entry; returns one dict per entry (the rows of ``--json``).

    Forward latency uses a batch of ``forward_batch`` patches (nnU-Net's predictor: 1); the training step the
    planned batch size (``train_batch`` overrides it). Ratios to the stock row are added when one is present.
    ``tune_threads``: every network's forwards and training steps run under their own
    :class:`~nnunetv2_lightmedseg.cpu.threads.ThreadTuner` (up to ``threads``), as LightMedSeg's trainer
    and predictor run them on a CPU; the first choice is made in untimed calls, later re-checks are timed.
    """
    say = progress or (lambda s: None)
    torch.set_num_threads(threads)
    allocator = configure_cpu_allocator()  # as LightMedSeg's trainer runs; one process, so stock runs under it too
    patch = setup.patch_size
    n_in = setup.num_input_channels
    train_batch = int(train_batch or setup.batch_size)
    fwd_shape = (forward_batch, n_in, *patch)
    rows: Dict[str, dict] = {}

    # 1) parameters and MACs; inference networks (stock without deep supervision, as the predictor builds it)
    models: Dict[str, torch.nn.Module] = {}
    for e in entries:
        m = e.build(setup, train=False).eval()
        models[e.name] = m
        flops, _ = count_flops(m, fwd_shape)
        rows[e.name] = {"name": e.name, "kind": e.kind, "variant": e.variant, "built_by": e.built_by,
                        "memory_format": "channels_last_3d" if e.channels_last else "contiguous (as nnU-Net)",
                        "params": count_parameters(m), "macs": flops // 2, "flops": flops,
                        "input_shape": list(fwd_shape), "threads": threads,
                        "cpu_allocator": allocator}
        say(f"{e.name}: {rows[e.name]['params']:,} params, {flops / 2e9:.2f} GMACs")

    # 2) CPU forward latency, interleaved
    g = torch.Generator().manual_seed(0)
    x = torch.randn(fwd_shape, generator=g)
    calls = {name: forward_callable(m, x) for name, m in models.items()}
    if tune_threads:
        times, tuned = _tuned_timings(calls, threads, runs, say)
        for name in calls:
            rows[name].update(forward_threads=tuned[name].threads, forward_thread_choices=tuned[name].history)
    else:
        times = interleaved_timings(calls, runs, warmup, progress=say)
    for name, t in times.items():
        s = summarize(t)
        rows[name].update(latency_s=s["median"], latency_spread=s, latency_runs_s=t)
    del calls, x
    gc.collect()

    # 3) training step (nnU-Net's train_step with each trainer's loss and optimiser), interleaved
    if measure_train:
        steps, batches = {}, {}
        for e in entries:
            net = e.build(setup, train=True).train()
            steps[e.name] = TrainStep(setup, e, net, torch.device("cpu"))
            batches[e.name] = steps[e.name].make_batch(train_batch)
            rows[e.name].update(loss=steps[e.name].loss_name, optimizer=steps[e.name].optimizer_name,
                                train_batch=train_batch, train_batch_source=steps[e.name].batch_source)
        tcalls = {n: (lambda s=steps[n], b=batches[n]: s(b)) for n in steps}
        if tune_threads:
            ttimes, tuners = _tuned_timings(tcalls, threads, train_runs, say)
        else:
            ttimes = interleaved_timings(tcalls, train_runs, 1, progress=say)
        for name, t in ttimes.items():
            s = summarize(t)
            rows[name].update(train_step_s=s["median"], train_step_spread=s, train_step_runs_s=t)
            if tune_threads:
                rows[name].update(train_threads=tuners[name].threads, train_thread_choices=tuners[name].history)
        del steps, batches, tcalls
        gc.collect()
    else:
        for r in rows.values():
            r.update(train_step_s=None, train_batch=None)

    # 4) peak memory, one fresh subprocess per model and mode
    if measure_memory:
        with tempfile.TemporaryDirectory(prefix="lightmedseg_mem_") as tmp:
            path = setup.save(tmp)
            for e in entries:
                say(f"peak memory {e.name} (forward)")
                fwd = measure_peak_memory(path, e.to_json(), "forward", threads, forward_batch)
                rows[e.name].update(peak_mem_mb=fwd["peak_mem_mb"], peak_mem_method=fwd["method"])
                if measure_train:
                    say(f"peak memory {e.name} (train step)")
                    tr = measure_peak_memory(path, e.to_json(), "train", threads, train_batch)
                    rows[e.name]["train_peak_mem_mb"] = tr["peak_mem_mb"]
    else:
        for r in rows.values():
            r["peak_mem_mb"] = None

    # 5) CUDA: AMP forward latency and max allocated memory
    if measure_cuda is None:
        measure_cuda = cuda_available()
    if measure_cuda:
        _cuda_measurements(models, fwd_shape, runs, warmup, rows, say)
    del models
    gc.collect()

    out = [rows[e.name] for e in entries]
    add_ratios(out)
    return out


def _tuned_timings(calls: Dict[str, Callable[[], object]], threads: int, runs: int,
                   say: Callable[[str], None]):
    """``calls`` timed interleaved, each under its own :class:`ThreadTuner` (up to ``threads``): the first choice
    in untimed calls (interleaved too), then ``runs`` timed calls (a later re-check is timed: it is part of the
    cost). Returns the times and the tuners; ``torch``'s thread count is ``threads`` again afterwards."""
    tuners = {n: ThreadTuner(threads) for n in calls}
    tuned = {n: (lambda c=calls[n], t=tuners[n]: t.run(c)) for n in calls}
    while any(t.probing for t in tuners.values()):
        for n, t in tuners.items():
            if t.probing:
                say(f"choosing threads {n} (trying {t.next_count})")
                tuned[n]()
    times = interleaved_timings(tuned, runs, 0, progress=say)
    torch.set_num_threads(threads)
    return times, tuners


def _cuda_measurements(models: Dict[str, torch.nn.Module], fwd_shape, runs: int, warmup: int, rows: Dict[str, dict],
                       say: Callable[[str], None]) -> None:
    dev = torch.device("cuda")
    x = torch.randn(fwd_shape, device=dev)
    gpu = {}
    for name, m in models.items():
        # channels_last_3d is a CPU optimisation of LightMedSeg; on CUDA every network runs as nnU-Net runs it
        gpu[name] = m.to(dev).to(memory_format=torch.contiguous_format).eval()
    calls = {n: forward_callable(m, x, amp=True) for n, m in gpu.items()}
    times = interleaved_timings(calls, runs, max(warmup, 2), sync=torch.cuda.synchronize, progress=say)
    for name, t in times.items():
        s = summarize(t)
        rows[name].update(cuda_latency_s=s["median"], cuda_latency_spread=s,
                          cuda_device=torch.cuda.get_device_name(0))
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        calls[name]()
        torch.cuda.synchronize()
        rows[name]["cuda_peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    for name, m in gpu.items():
        models[name] = m.cpu()
    del x, gpu, calls
    torch.cuda.empty_cache()


def add_ratios(rows: List[dict]) -> None:
    """``*_vs_stock``: model / stock for params, MACs, memory; ``speedup_vs_stock``: stock / model time."""
    stock = next((r for r in rows if r["name"] == STOCK), None)
    if stock is None:
        return
    for r in rows:
        for key in ("params", "macs", "peak_mem_mb", "train_peak_mem_mb", "cuda_peak_mem_mb"):
            if r.get(key) and stock.get(key):
                r[f"{key}_vs_stock"] = r[key] / stock[key]
        for key in ("latency_s", "train_step_s", "cuda_latency_s"):
            if r.get(key) and stock.get(key):
                r[f"{key[:-2]}_speedup_vs_stock"] = stock[key] / r[key]


# ---------------------------------------------------------------------------------------------- output
def format_table(rows: List[dict], setup_desc: str, info: dict) -> str:
    """Plain-text table with ratios to stock (params/MACs/memory as fractions, times as speed-ups)."""
    has_cuda = any(r.get("cuda_latency_s") for r in rows)
    has_train = any(r.get("train_step_s") for r in rows)
    head = ["model", "params", "GMACs", "GFLOPs", "CPU fwd s (IQR)", "speed-up", "train step s", "speed-up",
            "fwd mem MiB", "train mem MiB"]
    if has_cuda:
        head += ["CUDA fwd s", "speed-up"]
    keep = [i for i, h in enumerate(head) if has_train or i not in (6, 7, 9)]
    lines = []
    for r in rows:
        sp = r.get("latency_spread") or {}
        iqr = f"{r['latency_s']:.3f} ({sp.get('q25', 0):.3f}-{sp.get('q75', 0):.3f})" if r.get("latency_s") else "-"
        ps = f"{r['params'] / 1e6:.3f}M"
        if r.get("params_vs_stock") and r["name"] != STOCK:
            ps += f" ({r['params_vs_stock'] * 100:.1f}%)"
        ms = f"{r['macs'] / 1e9:.2f}"
        if r.get("macs_vs_stock") and r["name"] != STOCK:
            ms += f" ({r['macs_vs_stock'] * 100:.1f}%)"
        line = [r["name"], ps, ms, f"{r['flops'] / 1e9:.2f}", iqr,
                cell(r.get("latency_speedup_vs_stock"), ".1f") + ("x" if r.get("latency_speedup_vs_stock") else ""),
                cell(r.get("train_step_s"), ".3f"),
                cell(r.get("train_step_speedup_vs_stock"), ".1f") + ("x" if r.get("train_step_speedup_vs_stock")
                                                                      else ""),
                cell(r.get("peak_mem_mb"), ".0f"), cell(r.get("train_peak_mem_mb"), ".0f")]
        if has_cuda:
            line += [cell(r.get("cuda_latency_s"), ".4f"),
                     cell(r.get("cuda_latency_speedup_vs_stock"), ".1f")]
        lines.append([line[i] for i in keep])
    head = [head[i] for i in keep]
    r0 = rows[0]
    notes = [f"set-up: {setup_desc}",
             f"forward input {tuple(r0['input_shape'])}, fp32, eval, no_grad, {info['threads']} CPU thread(s), "
             f"median of {(r0.get('latency_spread') or {}).get('n', 0)} interleaved runs after warm-up; "
             f"torch {info['torch']}; CPU allocator tuning (cpu/allocator.py): "
             f"{r0.get('cpu_allocator', 'not configured')}, the same for every network (one process)",
             FLOP_CONVENTION,
             "speed-up = stock time / model time; (x%) = model / stock; memory = peak RSS above the RSS before the "
             "call, fresh process per model"]
    if r0.get("train_batch"):
        notes.append(f"train step = nnU-Net trainer train_step (forward, loss, backward, clip, optimiser step), "
                     f"batch {r0['train_batch']} ({r0.get('train_batch_source')}, the same for every network); losses: " +
                     "; ".join(f"{r['name']}: {r.get('loss')}" for r in rows))
    if r0.get("forward_threads"):
        notes.append(f"threads chosen from timed calls (--tune-threads, cpu/threads.py, up to "
                     f"{info['threads']}), forward / train step: " +
                     "; ".join(f"{r['name']}: {r['forward_threads']} / {r.get('train_threads', '-')}" for r in rows))
    if has_cuda:
        notes.append(f"CUDA: {info.get('cuda')}, fp16 autocast, synchronised, median")
    return "\n".join(table_lines(head, lines) + [""] + ["  " + n for n in notes])


def plot_network_rows(rows: List[dict], path: str, title: str) -> None:
    """Bars of params, GMACs, CPU latency (IQR error bars), train-step time and peak memory; log scale for the
    counts (they span two orders of magnitude); each bar labelled with its ratio to stock."""
    from ..utils.figures import new_figure, save_png

    panels = [("params", "parameters (M)", 1e-6, True), ("macs", "GMACs / forward", 1e-9, True),
              ("latency_s", "CPU forward (s)", 1.0, False), ("train_step_s", "train step (s)", 1.0, False),
              ("peak_mem_mb", "forward peak RSS (MiB)", 1.0, False)]
    panels = [p for p in panels if any(r.get(p[0]) for r in rows)]
    stock = next((r for r in rows if r["name"] == STOCK), None)
    names = [r["name"] for r in rows]
    colors = ["tab:gray" if r["kind"] == "stock" else "tab:blue" for r in rows]
    fig = new_figure(figsize=(3.4 * len(panels) + 1, 4.6))
    axes = list(fig.subplots(1, len(panels), squeeze=False)[0])
    for ax, (key, label, scale, log) in zip(axes, panels):
        vals = [(r.get(key) or 0) * scale for r in rows]
        err = None
        spread_key = {"latency_s": "latency_spread", "train_step_s": "train_step_spread"}.get(key)
        if spread_key:
            err = [[max(0.0, v - (r.get(spread_key) or {}).get("q25", v)) for v, r in zip(vals, rows)],
                   [max(0.0, (r.get(spread_key) or {}).get("q75", v) - v) for v, r in zip(vals, rows)]]
        ax.bar(range(len(rows)), vals, color=colors, yerr=err, capsize=3)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
        for i, r in enumerate(rows):
            if stock is None or r is stock or not r.get(key) or not stock.get(key):
                continue
            ratio = r[key] / stock[key]
            if key.endswith("_s"):
                txt = f"{1 / ratio:.1f}x faster" if ratio < 1 else f"{ratio:.1f}x slower"
            else:
                txt = f"{ratio * 100:.1f}% of stock"
            ax.annotate(txt, (i, vals[i]), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
