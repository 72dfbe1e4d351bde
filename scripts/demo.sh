#!/usr/bin/env bash
# The main job on the built-in demo data: set up, search an architecture on easy-VQA, train it, write the
# EvalAI-style test result file and score it with the official VQA metric. About 13 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# One intra-op thread per process: these small networks gain little from more, and lose up to 50x when
# other work shares the CPU (idle-spinning OpenMP threads). Override with OMP_NUM_THREADS=2.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/setup.sh
PY=.venv/bin/python
$PY search_vqa.py --DATASET easyvqa --VERSION demo_search --NW 0 run.overwrite=true
last=$($PY -c "import json; print(max(int(k[5:]) for k in json.load(open('arch/demo_search.json'))))")
$PY train_vqa.py --RUN train --DATASET easyvqa --VERSION demo_train --ARCH_PATH arch/demo_search.json \
    --ARCH_EPOCH "$last" --SEED 1 run.overwrite=true
epochs=$($PY -c "from mmnas.cli import parse; print(parse('vqa', 'train', ['--DATASET', 'easyvqa']).optim.max_epoch)")
$PY train_vqa.py --RUN test --DATASET easyvqa --VERSION demo_train --CKPT_PATH "logs/ckpts/demo_train_epoch$epochs.pkl"
# easy-VQA's test questions are the demo's val2014 (annotated) and test2015 (for the result file) splits.
$PY -m mmnas.evaluation.vqa datasets/easyvqa/annotations/v2_OpenEnded_mscoco_val2014_questions.json \
    datasets/easyvqa/annotations/v2_mscoco_val2014_annotations.json \
    logs/ckpts/result_test/result_demo_train.json > logs/demo_score.json
$PY - <<'PY'
import json
s = json.load(open("logs/demo_score.json"))
n = len(json.load(open("logs/ckpts/result_test/result_demo_train.json")))
print(f"easy-VQA test accuracy: {s['overall']:.2f}% on {n} questions (per answer type: {s['perAnswerType']})")
PY
echo "searched architecture: arch/demo_search.json (epoch $last); wall time $(( $(date +%s) - start )) s"
