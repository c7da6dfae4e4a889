#!/usr/bin/env bash
# Thick-slice comparison (issue 9, item 4): LightMedSeg with the plans-aware schedule (-c 3d_fullres, strides
# from nnU-Net's plans, the paper's 3x3x3 kernels) vs the paper's isotropic network on the patch rounded up to
# 16 per axis (what `lightmedseg plans --variant planned` gave before the schedule existed), at equal
# iterations, on a generated
# cine-MRI-like dataset (nnunetv2_lightmedseg.data.write_thick_slice_dataset: 10 slices 8 mm apart, 1.25 mm
# pixels, RV/MYO/LV). Prints the Dice per structure on held-out cases and the mean epoch time of each run.
#
#   bash scripts/thick_slice_benchmark.sh [WORKDIR] [EPOCHS_x_ITERATIONS: 4x50 (default) | small]
#
# 4x50 uses nnUNetTrainer_LightMedSeg_CPUBench_4x50 vs nnUNetTrainer_LightMedSeg_IsoBench_4x50 (4 epochs x 50
# iterations each, same batch size, augmentation, validation iterations), 20 training + 10 held-out cases.
# "small" is a quick check (2 x 15 iterations, 10 + 4 cases): it shows both paths run, not which is better.
# Device: CPU (add DEVICE=cuda in the environment for a GPU).
set -euo pipefail
WORK="${1:-$PWD/thick_slice_benchmark}"
SIZE="${2:-4x50}"
DEVICE="${DEVICE:-cpu}"
cd "$(dirname "$0")/.."
ID=992
DS="Dataset${ID}_LightMedSegSyntheticCine"
if [ "$SIZE" = "small" ]; then
  N_TRAIN=10; N_TEST=4; TR_AWARE=nnUNetTrainer_LightMedSeg_Smoke; TR_ISO=nnUNetTrainer_LightMedSeg_IsoSmoke
else
  N_TRAIN=20; N_TEST=10; TR_AWARE=nnUNetTrainer_LightMedSeg_CPUBench_4x50; TR_ISO=nnUNetTrainer_LightMedSeg_IsoBench_4x50
fi
export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed" nnUNet_results="$WORK/results"
export nnUNet_def_n_proc="${nnUNet_def_n_proc:-1}" nnUNet_compile=f
# augmentation in the training process (set below, after planning: nnU-Net's planner passes nnUNet_n_proc_DA to
# torch.set_num_threads, which refuses 0)
N_PROC_DA="${nnUNet_n_proc_DA:-0}"
unset nnUNet_n_proc_DA
mkdir -p "$WORK/trainers" "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
# the "small" baseline trainer (isotropic Smoke) lives in the work folder: users never need it
cat > "$WORK/trainers/nnUNetTrainer_LightMedSeg_IsoSmoke.py" <<'EOF'
from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg_Isotropic, nnUNetTrainer_LightMedSeg_Smoke


class nnUNetTrainer_LightMedSeg_IsoSmoke(nnUNetTrainer_LightMedSeg_Isotropic):
    training_options = dict(nnUNetTrainer_LightMedSeg_Smoke.training_options)
EOF
eval "$(lightmedseg env)"
export nnUNet_extTrainer="$WORK/trainers:$nnUNet_extTrainer"

python - <<EOF
from nnunetv2_lightmedseg.data import write_thick_slice_dataset
write_thick_slice_dataset("$nnUNet_raw", $ID, num_train=$N_TRAIN, num_test=$N_TEST)
EOF
nnUNetv2_plan_and_preprocess -d $ID -c 3d_fullres -np 2 --verify_dataset_integrity

# the baseline's configuration: nnU-Net's patch rounded up to 16 on every axis (the isotropic network's divisor)
python - <<EOF
import json, math
f = "$nnUNet_preprocessed/$DS/nnUNetPlans.json"
plans = json.load(open(f))
patch = plans["configurations"]["3d_fullres"]["patch_size"]
plans["configurations"]["3d_fullres_iso16"] = {"inherits_from": "3d_fullres",
                                               "patch_size": [int(math.ceil(p / 16) * 16) for p in patch]}
json.dump(plans, open(f, "w"), indent=4)
print("3d_fullres patch", patch, "strides", plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"],
      "-> 3d_fullres_iso16 patch", plans["configurations"]["3d_fullres_iso16"]["patch_size"])
EOF

export nnUNet_n_proc_DA="$N_PROC_DA"
for run in "3d_fullres $TR_AWARE" "3d_fullres_iso16 $TR_ISO"; do
  set -- $run
  nnUNetv2_train $ID "$1" 0 -tr "$2" -device "$DEVICE"
  nnUNetv2_predict -i "$nnUNet_raw/$DS/imagesTs" -o "$WORK/pred_$1" -d $ID -c "$1" -f 0 -tr "$2" -device "$DEVICE" \
    -npp 1 -nps 1 --disable_tta
  nnUNetv2_evaluate_folder "$nnUNet_raw/$DS/labelsTs" "$WORK/pred_$1" -djfile "$nnUNet_raw/$DS/dataset.json" \
    -pfile "$nnUNet_preprocessed/$DS/nnUNetPlans.json" -o "$WORK/pred_$1/summary.json" -np 1
done

python - <<EOF
import glob, json, re, statistics
for conf, tr in (("3d_fullres", "$TR_AWARE"), ("3d_fullres_iso16", "$TR_ISO")):
    s = json.load(open(f"$WORK/pred_{conf}/summary.json"))
    dice = {k: round(v["Dice"], 3) for k, v in s["mean"].items()}
    log = sorted(glob.glob(f"$nnUNet_results/$DS/{tr}__nnUNetPlans__{conf}/fold_0/training_log_*.txt"))[-1]
    epochs = [float(t) for t in re.findall(r"Epoch time: ([0-9.]+) s", open(log).read())]
    print(f"{conf:18s} {tr:42s} Dice {dice} mean {s['foreground_mean']['Dice']:.3f}; "
          f"epoch time {statistics.mean(epochs):.1f} s (n={len(epochs)})")
EOF
