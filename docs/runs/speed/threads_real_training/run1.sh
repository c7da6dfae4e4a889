#!/bin/bash
# usage: run1.sh TRAINER THREADS DA TAG
source /work/exp/env.sh
cd /work/main && eval "$(lightmedseg env)"
export nnUNet_extTrainer="$nnUNet_extTrainer:/work/scratch/s14" nnUNet_compile=f
export EXP_THREADS=$2
if [ "$3" != "default" ]; then export nnUNet_n_proc_DA=$3; else unset nnUNet_n_proc_DA; fi
rm -rf /work/exp/res/Dataset004_Hippocampus/$1__nnUNetPlans__3d_fullres/fold_0
/usr/bin/time -v nnUNetv2_train 4 3d_fullres 0 -tr $1 -device cpu --disable_checkpointing > /work/scratch/s14/log_$4.txt 2>&1
grep -h "STEP\|epoch_time\|Epoch time\|threads\|Elapsed\|User time\|System time" /work/scratch/s14/log_$4.txt
