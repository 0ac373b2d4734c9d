#!/bin/bash
# Square (score-based) on the eighteenth session's noise-free Robust-MAIL, 64 per task, at 8/255 (two threads, alone)
source /work/venv/bin/activate
export PYTHONPATH=/work/wt_c/src OMP_NUM_THREADS=2 MAILNET_DATA=/work/shared/data
R=/work/runs/s18/nonoise_1t_a; A=/work/runs/s23/attacks
date -u +%FT%TZ
python -c "import sys; from mailnet.cli import main; sys.exit(main())" attack $R --attack square --eps 8 \
    --square-queries 100 --eot 8 --eval-draws 8 --subset 64 --batch-size 64 --no-sanity --quiet \
    --out $A/robust_mail_nonoise_s18__square100_eot8_eps8_sub64
date -u +%FT%TZ
