#!/bin/bash
# usage: lane.sh EPS  -- AutoAttack-rand at EPS/255 on the eighteenth session's noise-free Robust-MAIL, 64 per task
source /work/venv/bin/activate
export PYTHONPATH=/work/wt_a/src OMP_NUM_THREADS=1 MAILNET_DATA=/work/shared/data
R=/work/runs/s18/nonoise_1t_a; A=/work/runs/s23/attacks
S64="--subset 64 --batch-size 64 --no-sanity --eval-draws 8"
date -u +%FT%TZ
python -c "import sys; from mailnet.cli import main; sys.exit(main())" attack $R --attack autoattack --aa-version rand --eps $1 --aa-steps 20 --eot 10 $S64 --quiet \
    --out $A/robust_mail_nonoise_s18__autoattack_rand20_eps$1_sub64
date -u +%FT%TZ
