"""Reference latency of the policy in PyTorch: the figures a TensorRT engine must beat.

One policy step = the backbone on one 224x224 frame (Kosmos-2 vision tower +
image projection + text model over 64 latents + prompt + action token, the
export's `BackboneExport` computation) + the LSTM head over a full window of
8 features. Measured per step, medians and p99, after warm-up, in:

  eager       PyTorch eager, fp16 weights and activations (the research
              team's deployment form)
  cuda_graph  the same step captured once as a CUDA graph and replayed
              (static input buffers; removes the Python/launch overhead)
  compile     torch.compile(mode="max-autotune-no-cudagraphs") (opt-in, slow
              to compile: --modes eager,cuda_graph,compile)

Weights are random (the cost does not depend on their values); merged LoRA
adds no cost, so the plain Kosmos-2 architecture is timed. GPU memory is
torch.cuda.max_memory_allocated per mode (weights + activations).

  python engines/bench_torch.py --size full --device cuda --out torch_bench.json
  python engines/bench_torch.py --size tiny --device cpu     # smoke run without a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mobile_vla as mv  # noqa: E402


def build(size: str, attn: str, device: str, dtype):
    from transformers import Kosmos2Model

    raw_cfg = mv.fake_train_config(size, "engines/bench_torch.py: random weights, timing only")
    cfg = mv.parse_train_config(raw_cfg, "bench_torch")
    kosmos = Kosmos2Model._from_config(mv.kosmos2_config(cfg), attn_implementation=attn).eval()
    D = kosmos.config.text_config.embed_dim
    backbone = mv.BackboneExport(kosmos, torch.randn(D) * 0.02, "erased_prompt").eval()
    head = mv.PolicyHead(D, cfg).eval()
    backbone = backbone.to(device=device, dtype=dtype)
    head = head.to(device=device, dtype=dtype)
    image = kosmos.config.vision_config.image_size
    return cfg, backbone, head, D, image, mv.param_count(kosmos)


def summarise(ms: list[float]) -> dict:
    s = sorted(ms)
    return {
        "samples": len(s),
        "p50_ms": statistics.median(s),
        "p99_ms": s[min(len(s) - 1, round(0.99 * (len(s) - 1)))],
        "max_ms": s[-1],
        "mean_ms": statistics.fmean(s),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="sdpa", help="Hugging Face attention implementation")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--modes", default="eager,cuda_graph")
    ap.add_argument("--out", help="write the report as JSON here")
    args = ap.parse_args(argv)

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("bench_torch: --device cuda but torch.cuda.is_available() is false")
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    torch.manual_seed(0)
    t0 = time.time()
    cfg, backbone, head, D, image, params = build(args.size, args.attn, args.device, dtype)
    load_s = time.time() - t0
    # The erased_prompt layout of a 16-token prompt: 64 ids, mask over 64 + action token.
    layout = mv.prompt_layout("erased_prompt", [0] + list(range(100, 114)) + [2])
    ids = torch.tensor([layout.input_ids], device=args.device)
    mask = torch.tensor([layout.attention_mask], device=args.device)
    pixels = torch.randn(1, 3, image, image, device=args.device, dtype=dtype)
    window = torch.randn(1, cfg.window, D, device=args.device, dtype=dtype) * 0.1

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        feature = backbone(pixels, ids, mask)
        # The new feature joins the window (as the runtime's ring does).
        window[:, -1] = feature
        return head(window)

    def timed(fn) -> list[float]:
        for _ in range(args.warmup):
            fn()
        sync()
        out = []
        for _ in range(args.steps):
            t = time.perf_counter()
            fn()
            sync()
            out.append((time.perf_counter() - t) * 1e3)
        return out

    report = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "size": args.size,
        "backbone_parameters": params,
        "dtype": args.dtype,
        "attn": args.attn,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_s": load_s,
        "modes": {},
    }
    try:
        import transformers

        report["transformers"] = transformers.__version__
    except ImportError:
        pass

    with torch.inference_mode():
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            if mode == "eager":
                first = time.perf_counter()
                step()
                sync()
                first_ms = (time.perf_counter() - first) * 1e3
                ms = timed(step)
                entry = {"first_call_ms": first_ms}
            elif mode == "cuda_graph":
                if not cuda:
                    report["modes"][mode] = {"skipped": "CUDA graphs need a CUDA device"}
                    continue
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        step()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                t = time.perf_counter()
                with torch.cuda.graph(graph):
                    static_out = step()
                sync()
                capture_ms = (time.perf_counter() - t) * 1e3
                ms = timed(graph.replay)
                entry = {"capture_ms": capture_ms, "output_shape": list(static_out.shape)}
            elif mode == "compile":
                compiled_backbone = torch.compile(backbone, mode="max-autotune-no-cudagraphs")
                compiled_head = torch.compile(head, mode="max-autotune-no-cudagraphs")

                def compiled_step():
                    feature = compiled_backbone(pixels, ids, mask)
                    window[:, -1] = feature
                    return compiled_head(window)

                t = time.perf_counter()
                compiled_step()
                sync()
                entry = {"compile_and_first_call_s": time.perf_counter() - t}
                ms = timed(compiled_step)
            else:
                sys.exit(f"bench_torch: unknown mode {mode!r}")
            entry.update(summarise(ms))
            if cuda:
                entry["gpu_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            report["modes"][mode] = entry
            print(f"{mode:<11} p50 {entry['p50_ms']:.3f} ms  p99 {entry['p99_ms']:.3f} ms"
                  + (f"  GPU max allocated {entry['gpu_max_allocated_mib']:.0f} MiB" if cuda else ""),
                  flush=True)

    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
