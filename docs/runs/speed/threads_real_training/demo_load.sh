#!/bin/bash
# run_demo.sh with two busy processes beside it: chosen threads, then LIGHTMEDSEG_CPU_THREADS=2 (nnU-Net's count)
for i in 1 2; do python3 -c "while True: pass" & done
sleep 1
cd /work/main
for mode in auto 2; do
  W=/work/scratch/s14/demo_$mode; rm -rf $W; mkdir -p $W
  echo "mode $mode start $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  rmdir $W; LIGHTMEDSEG_CPU_THREADS=$mode /usr/bin/time -f "wall %e s" bash /work/main/run_demo.sh --workdir $W > /work/scratch/s14/demo_$mode.log 2>&1
  echo "mode $mode end $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  tail -4 /work/scratch/s14/demo_$mode.log
done
pkill -f "while True: pass"
