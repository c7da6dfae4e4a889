#!/bin/bash
# real nnUNetv2_predict (workers and all) of 20 fold-0 cases, LightMedSeg model, with/without two busy processes
cd /work/exp && source env.sh
export nnUNet_extTrainer=/work/main/nnunetv2_lightmedseg/trainers:/work/main/docs/runs/recipe_study
run() { # tag threads
  rm -rf /work/scratch/s14/pred_out_$1
  s=$(date +%s.%N)
  LIGHTMEDSEG_CPU_THREADS=$2 nnUNetv2_predict -i /work/scratch/s14/pred_in -o /work/scratch/s14/pred_out_$1 -d 4 -c 3d_fullres -f 0 -tr nnUNetTrainer_LMSOverlap_30ep -chk checkpoint_best.pth -device cpu > /work/scratch/s14/pred_$1.log 2>&1
  e=$(date +%s.%N); echo "$1 threads=$2 $(echo "$e - $s" | bc) s load $(cut -d' ' -f1 /proc/loadavg)"
}
run idle_auto auto
run idle_2 2
for i in 1 2; do python3 -c "while True: pass" & done; sleep 1
run load_auto auto
run load_2 2
run load_auto_b auto
pkill -f "while True: pass"
