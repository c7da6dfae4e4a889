#!/bin/bash
# session 14: issue 10's acceptance commands + the thread-tuned rows, package at HEAD of /work/main, one after another
cd /work/exp && source env.sh
export nnUNet_extTrainer=/work/main/nnunetv2_lightmedseg/trainers:/work/main/docs/runs/recipe_study
unset PYTHONPATH
O=/work/scratch/s14/final; mkdir -p $O; cd $O
step() { echo "$1 done $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
echo "commit $(git -C /work/main rev-parse --short HEAD) $(date) load $(cat /proc/loadavg)"
N="lightmedseg benchmark network"
H="-d 4 -c 3d_fullres --runs 5 --train-runs 5 --no-memory"
$N --shape 128 128 128 --in-channels 4 --runs 5 --no-train --no-memory --json fwd128.json > fwd128.txt 2>&1; step fwd128
$N $H --json hippo1.json > hippo1.txt 2>&1; step hippo1
$N $H --load 2 --tune-threads --json hippo_load2_tuned1.json > hippo_load2_tuned1.txt 2>&1; step load2_tuned1
$N $H --json hippo2.json > hippo2.txt 2>&1; step hippo2
$N $H --load 2 --tune-threads --json hippo_load2_tuned2.json > hippo_load2_tuned2.txt 2>&1; step load2_tuned2
$N --shape 128 128 128 --in-channels 4 --runs 3 --train-runs 2 --no-memory --json train128.json > train128.txt 2>&1; step train128
$N $H --json hippo3.json > hippo3.txt 2>&1; step hippo3
$N $H --load 2 --tune-threads --json hippo_load2_tuned3.json > hippo_load2_tuned3.txt 2>&1; step load2_tuned3
$N $H --tune-threads --json hippo_idle_tuned.json > hippo_idle_tuned.txt 2>&1; step idle_tuned
$N $H --load 2 --json hippo_load2_fixed.json > hippo_load2_fixed.txt 2>&1; step load2_fixed
P="lightmedseg benchmark predict -d 4 -c 3d_fullres -tr nnUNetTrainer_StockCurve_5ep -tr nnUNetTrainer_LMSOverlap_30ep -chk checkpoint_best.pth --val-fold 0 --num-cases 20 --threads 2"
$P --json predict.json > predict.txt 2>&1; step predict
$P --load 2 --json predict_load2.json > predict_load2.txt 2>&1; step predict_load2
LIGHTMEDSEG_CPU_THREADS=2 $P --load 2 --json predict_load2_fixed.json > predict_load2_fixed.txt 2>&1; step predict_load2_fixed
