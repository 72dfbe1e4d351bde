#!/usr/bin/env bash
# Image-text matching on the built-in demo data: generate the synthetic scenes (Flickr30K layout), search an
# architecture, train it, score every pair of the 1,000-image / 5,000-caption test split, and re-score the saved
# matrix with the retrieval CLI. About ten minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# One intra-op thread per process: these small networks gain little from more, and lose up to 50x when
# other work shares the CPU (idle-spinning OpenMP threads). Override with OMP_NUM_THREADS=2.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/setup.sh
PY=.venv/bin/python
$PY search_itm.py --DATASET shapes --VERSION itm_demo_search --NW 0 run.overwrite=true
last=$($PY -c "import json; print(max(int(k[5:]) for k in json.load(open('arch/itm_demo_search.json'))))")
$PY train_itm.py --RUN train --DATASET shapes --VERSION itm_demo_train --ARCH_PATH arch/itm_demo_search.json \
    --ARCH_EPOCH "$last" --SEED 1 run.overwrite=true
epochs=$($PY -c "from mmnas.cli import parse; print(parse('itm', 'train', ['--DATASET', 'shapes']).optim.max_epoch)")
$PY train_itm.py --RUN test --DATASET shapes --VERSION itm_demo_train \
    --CKPT_PATH "logs/ckpts/itm_demo_train_epoch$epochs.pkl"
# The saved [images, captions] scores matrix, scored again from the file alone.
$PY -m mmnas.evaluation.retrieval logs/ckpts/result_test/scores_itm_demo_train.npy > logs/itm_demo_score.json
$PY - <<'PY'
import json
s = json.load(open("logs/itm_demo_score.json"))
print(f"shapes ITM test (1,000 images, 5,000 captions): image->text R@1/5/10 "
      f"{s['i2t']['r1']:.1f}/{s['i2t']['r5']:.1f}/{s['i2t']['r10']:.1f}, text->image R@1/5/10 "
      f"{s['t2i']['r1']:.1f}/{s['t2i']['r5']:.1f}/{s['t2i']['r10']:.1f}, rsum {s['rsum']:.1f}")
PY
echo "searched architecture: arch/itm_demo_search.json (epoch $last); wall time $(( $(date +%s) - start )) s"
