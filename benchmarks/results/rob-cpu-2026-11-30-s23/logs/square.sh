#!/bin/bash
# Square (score-based) on the twenty-first session's full Robust-MAIL (rm_scratch), 16 per task, at 8/255
source /work/venv/bin/activate
export PYTHONPATH=/work/wt_b/src OMP_NUM_THREADS=1 MAILNET_DATA=/work/shared/data
R=/work/runs/s21/warm/rm_scratch; A=/work/runs/s23/attacks
date -u +%FT%TZ
python -c "import sys; from mailnet.cli import main; sys.exit(main())" attack $R --attack square,reference --eps 8 \
    --square-queries 100 --eot 8 --eval-draws 8 --subset 16 --batch-size 64 --no-sanity --quiet \
    --out $A/robust_mail_s21__square100_eot8_eps8_sub16
date -u +%FT%TZ
