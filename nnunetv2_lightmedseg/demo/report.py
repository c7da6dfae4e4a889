"""What the demo prints when it ends: the Dice reached, the time of each step, and where the kept model is."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


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


def print_kept(workdir: Path, model_dir: Path, predictions: Path, logs: Path, predict_line: str,
               activate: Optional[str], registered: bool) -> None:
    """Where the kept run is and the ``nnUNetv2_predict`` line that uses it in a new shell (``predict_line``, with
    the ``nnUNet_*`` variables it needs; ``activate``: the command that puts nnU-Net's commands on PATH)."""
    print(f"Kept everything in {workdir}:\n  model          {model_dir}\n  predictions    "
          f"{predictions}\n  logs           "
          f"{logs}\n  summary        {workdir / 'demo_summary.json'}")
    where = f"in a new shell, after `{activate}`" if activate else "in a new shell"
    print(f"Use the model with nnU-Net ({where}; -i: a folder of images, -o: where to write):\n  {predict_line}")
    if not registered:
        print("Run `lightmedseg install-trainers` once and nnU-Net finds the LightMedSeg trainers in this "
              "environment without nnUNet_extTrainer.")
    print(f"Remove the run with `rm -r {workdir}` (or run the demo with --clean).")
