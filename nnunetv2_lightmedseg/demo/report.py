"""What the demo prints when it ends: the Dice reached, the time of each step, and where the kept model is."""
from __future__ import annotations

from pathlib import Path


def print_report(result: dict) -> None:
    print("\n" + "=" * 72)
    print(f"LightMedSeg demo: {result['dataset']}  trainer {result['trainer']}  ({result['device']})")
    print(f"Dice on {result['num_eval_cases']} {result['evaluated_on']}:")
    width = max(len(k) for k in result["dice"]) if result["dice"] else 4
    for name, dice in result["dice"].items():
        print(f"  {name:<{width}}  {dice:.4f}")
    print(f"  {'mean':<{width}}  {result['mean_dice']:.4f}  (foreground classes/regions)")
    cpu = result.get("cpu_seconds", {})
    times = ", ".join(f"{k} {v:.1f} s" + (f" (CPU {cpu[k]:.0f} s)" if k in cpu else "")
                      for k, v in result["seconds"].items())
    print(f"Time (wall): {times}; total {sum(result['seconds'].values()):.1f} s")
    print("=" * 72)


def print_kept(workdir: Path, model_dir: Path, predictions: Path, logs: Path, uses: str, dataset_id: int,
               configuration: str, fold: int, trainer: str, device: str) -> None:
    """Where the kept run is and how to use it with nnU-Net (``uses``: the nnUNet_* variables to export)."""
    print(f"Kept everything in {workdir}:\n  model          {model_dir}\n  predictions    "
          f"{predictions}\n  logs           "
          f"{logs}\n  summary        {workdir / 'demo_summary.json'}\nUse it with nnU-Net: export {uses}; "
          f"then e.g. nnUNetv2_predict -i IMAGES -o OUT -d {dataset_id} -c {configuration} -f {fold} "
          f"-tr {trainer} -device {device}. Remove it with `rm -r {workdir}` (or run the demo with --clean).")
