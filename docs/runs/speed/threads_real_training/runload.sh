#!/bin/bash
# usage: runload.sh TRAINER THREADS TAG  (two busy processes beside it)
for i in 1 2; do python3 -c "while True: pass" & done
sleep 1
/work/scratch/s14/run1.sh $1 "$2" default $3
pkill -f "while True: pass"
