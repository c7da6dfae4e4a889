"""``lightmedseg-run -i IN -o OUT --bundle DIR``: segment images with a bundle, without PyTorch or nnU-Net.

IN is a folder in nnU-Net's naming (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``, ... one file per channel, as
``nnUNetv2_predict -i``) or one case's file (``CASE_0000.nii.gz``; its other channels are taken from the same
folder). OUT is a folder (``OUT/CASE.nii.gz`` per case) or, for a single case, a file name with the bundle's
file ending. Existing outputs are kept unless ``--overwrite`` is given (as ``nnUNetv2_predict --continue_prediction``
would skip them, the runtime refuses to replace them unasked).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from . import RuntimeInputError

EPILOG = "Errors about the input exit with status 2 and one line saying what to do."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightmedseg-run", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog=EPILOG)
    p.add_argument("-i", dest="input", required=True, type=Path,
                   help="input folder (CASE_0000<ending>, CASE_0001<ending>, ...) or one case's _0000 file")
    p.add_argument("-o", dest="output", required=True, type=Path,
                   help="output folder (one CASE<ending> per case), or an output file for a single case")
    p.add_argument("--bundle", "-b", dest="bundle", required=True, type=Path,
                   help="bundle folder written by 'lightmedseg export --bundle'")
    p.add_argument("--disable_tta", "--disable-tta", dest="disable_tta", action="store_true",
                   help="no test-time mirroring, as nnUNetv2_predict --disable_tta (up to 8x less work in 3D)")
    p.add_argument("--disable_postprocessing", "--disable-postprocessing", dest="disable_postprocessing",
                   action="store_true",
                   help="do not apply the bundle's postprocessing (nnU-Net's postprocessing.pkl, when exported); "
                        "nnUNetv2_predict alone does not apply it either")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime intra-op threads (default: chosen from timed calls between all the cores "
                        "this process may use and 1, which is faster on a busy machine; the result is the same)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    return p


def case_files(input_path: Path, file_ending: str, num_channels: int) -> Dict[str, List[Path]]:
    """{case id: channel files in channel order} for a folder or a single ``_0000`` file (nnU-Net's naming)."""
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(file_ending) + "$")
    if input_path.is_file():
        m = pattern.match(input_path.name)
        if not input_path.name.endswith(file_ending):
            raise RuntimeInputError(f"{input_path} does not end with {file_ending}, the file ending the model was "
                                    f"trained on: convert it (e.g. with SimpleITK) to {file_ending}")
        if not m:
            raise RuntimeInputError(f"{input_path.name} is not named CASE_0000{file_ending} (nnU-Net's naming: one "
                                    f"file per channel, _0000 for the first): rename it")
        folder, cases = input_path.parent, {m.group(1)}
    elif input_path.is_dir():
        folder = input_path
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        cases = {m.group(1) for m in map(pattern.match, names) if m}
        if not cases:
            others = sorted({_ending(n) for n in names})
            raise RuntimeInputError(f"no CASE_XXXX{file_ending} files in {folder}"
                                    + (f" (found files ending {', '.join(others)}; the model reads "
                                       f"{file_ending}: convert them)" if others else " (the folder is empty)"))
    else:
        raise RuntimeInputError(f"input {input_path} does not exist")
    out = {}
    for case in sorted(cases):
        channels = sorted((int(m.group(2)), folder / m.group(0)) for m in
                          (pattern.match(p.name) for p in folder.glob(f"{glob_escape(case)}_*{file_ending}")) if
                          m and m.group(1) == case)
        numbers = [c for c, _ in channels]
        if numbers != list(range(num_channels)):
            raise RuntimeInputError(f"case {case} has channel files {', '.join(f'_{c:04d}' for c in numbers)} in "
                                    f"{folder}; the model takes {num_channels} channel(s): "
                                    f"{', '.join(f'_{c:04d}' for c in range(num_channels))}")
        out[case] = [p for _, p in channels]
    return out


def glob_escape(s: str) -> str:
    import glob
    return glob.escape(s)


def _ending(name: str) -> str:
    for e in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".gipl", ".png", ".tif", ".tiff", ".npy", ".dcm"):
        if name.lower().endswith(e):
            return e
    return os.path.splitext(name)[1] or name


def output_files(cases: Dict[str, List[Path]], output: Path, file_ending: str) -> Dict[str, Path]:
    if output.name.endswith(file_ending) and not output.is_dir():
        if len(cases) != 1:
            raise RuntimeInputError(f"-o {output} is a file name but the input holds {len(cases)} cases: give an "
                                    f"output folder")
        output.parent.mkdir(parents=True, exist_ok=True)
        return {next(iter(cases)): output}
    if output.exists() and not output.is_dir():
        raise RuntimeInputError(f"-o {output} exists and is not a folder; for a single case give a file name "
                                f"ending {file_ending}")
    output.mkdir(parents=True, exist_ok=True)
    return {case: output / f"{case}{file_ending}" for case in cases}


class Progress:
    """A one-line progress bar on a terminal (stderr); nothing when stderr is not a terminal or with --quiet."""

    def __init__(self, total_cases: int, enabled: bool) -> None:
        self.total, self.enabled, self.case, self.name = total_cases, enabled, 0, ""
        self.t0 = time.perf_counter()

    def start_case(self, k: int, name: str) -> None:
        self.case, self.name = k, name
        self.tiles(0, 1)

    def tiles(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        frac = (self.case + done / max(total, 1)) / self.total
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r[{bar:<30}] case {self.case + 1}/{self.total} {self.name[:30]:<30} "
                         f"{time.perf_counter() - self.t0:6.1f} s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run(args: argparse.Namespace) -> int:
    from .predictor import BundlePredictor

    if args.threads is not None and args.threads < 1:
        raise RuntimeInputError(f"--threads must be >= 1, got {args.threads}")
    predictor = BundlePredictor(args.bundle, use_mirroring=not args.disable_tta, threads=args.threads,
                                use_postprocessing=not args.disable_postprocessing)
    cases = case_files(args.input, predictor.file_ending, predictor.num_input_channels)
    outputs = output_files(cases, args.output, predictor.file_ending)
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.overwrite:
        raise RuntimeInputError(f"{len(existing)} output file(s) exist already ({existing[0]}"
                                f"{', ...' if len(existing) > 1 else ''}); nothing was written: choose another "
                                f"output or pass --overwrite")
    progress = Progress(len(cases), enabled=sys.stderr.isatty() and not args.quiet)
    t0 = time.perf_counter()
    try:
        for k, (case, files) in enumerate(cases.items()):
            progress.start_case(k, case)
            predictor.predict_to_file([str(f) for f in files], str(outputs[case]), progress.tiles)
    finally:
        progress.close()
    if not args.quiet:
        print(f"segmented {len(cases)} case(s) in {time.perf_counter() - t0:.1f} s -> "
              f"{args.output}", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except RuntimeInputError as e:
        print(f"lightmedseg-run: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lightmedseg-run: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
