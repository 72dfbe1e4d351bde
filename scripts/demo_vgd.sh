#!/usr/bin/env bash
# Visual grounding on the built-in demo: generate the synthetic shapes scenes (first use only), search an
# architecture, train it, and score the test split (testA) with a per-expression result file. One thread per process:
# these small networks run faster that way, and much faster when other work shares the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
PY=${PY:-.venv/bin/python}
$PY search_vgd.py --DATASET shapes --VERSION vgd_demo_search --NO_PROGRESS run.overwrite=true
last=$($PY -c "import json; print(max(int(k[5:]) for k in json.load(open('arch/vgd_demo_search.json'))))")
$PY train_vgd.py --RUN train --DATASET shapes --VERSION vgd_demo_train --ARCH_PATH arch/vgd_demo_search.json \
    --ARCH_EPOCH "$last" --SEED 1 --NO_PROGRESS run.overwrite=true
epochs=$($PY -c "from mmnas.cli import parse; print(parse('vgd', 'train', ['--DATASET', 'shapes']).optim.max_epoch)")
$PY train_vgd.py --RUN test --DATASET shapes --VERSION vgd_demo_train --NO_PROGRESS \
    --CKPT_PATH "logs/ckpts/vgd_demo_train_epoch$epochs.pkl"
$PY - <<'PY'
import json
rec = [json.loads(l) for l in open("logs/log/metrics_vgd_demo_train.jsonl")][-1]
print(f"shapes VGD test ({rec['split']}) accuracy: {rec['accuracy']:.2f}% on {rec['expressions']} expressions; "
      f"relation-ambiguous subset {rec['accuracy_relation']:.2f}% ({rec['expressions_relation']}), "
      f"attribute subset {rec['accuracy_attribute']:.2f}% ({rec['expressions_attribute']}); "
      f"results: {rec['result_file']}")
PY
echo "searched architecture: arch/vgd_demo_search.json (epoch $last); wall time $(( $(date +%s) - start )) s"
