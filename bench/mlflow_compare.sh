#!/usr/bin/env bash
# Side by side: `mlflow models serve` against `sgdserve serve`, one-row predictions, same model
# family (a linear model on the bundled house prices), same worker count, wrk with 16
# connections, 3 interleaved rounds of 5 s. Not a test and not a dependency: mlflow is installed
# into its own venv under $WORK. Needs wrk (apt-get install wrk) and `make test` run once.
#
#   bash bench/mlflow_compare.sh [WORKERS]        # default 2
#   MLFLOW_SPEC='mlflow<3' WORK=/tmp/mlflow2 bash bench/mlflow_compare.sh 1   # another mlflow
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-2}
WORK=${WORK:-/tmp/sgdserve-mlflow-bench}
MLFLOW_SPEC=${MLFLOW_SPEC:-mlflow}
export MLFLOW_TRACKING_URI="file://$WORK/mlruns"  # mlflow 2 would make ./mlruns in the repo
mkdir -p "$WORK"
[ -x "$WORK/venv/bin/mlflow" ] || { python3 -m venv "$WORK/venv"; "$WORK/venv/bin/pip" install -q "$MLFLOW_SPEC" scikit-learn; }
echo "mlflow $("$WORK/venv/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
rm -rf "$WORK/model" "$WORK/store"
"$WORK/venv/bin/python" - "$WORK/model" <<'PY'
import sys, warnings
import mlflow.sklearn, pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression
warnings.simplefilter("ignore")
df = pd.read_csv("service/sample_data/houses.csv")
X = df[["sqft", "bedrooms", "bathrooms", "age_years"]].astype(float)
model = LinearRegression().fit(X, df["price"])
mlflow.sklearn.save_model(model, sys.argv[1], signature=infer_signature(X, model.predict(X)))
PY
.venv/bin/sgdserve train --sample --model-dir "$WORK/store" > /dev/null
echo '{"dataframe_records": [{"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}]}' > "$WORK/mlflow.json"
echo '{"features": {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}' > "$WORK/sgdserve.json"
for name in mlflow sgdserve; do
  cat > "$WORK/$name.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/$name.json", "rb")
wrk.body = f:read("*a")
f:close()
LUA
done
PATH="$WORK/venv/bin:$PATH" "$WORK/venv/bin/mlflow" models serve -m "$WORK/model" --env-manager local \
  -h 127.0.0.1 -p 8150 -w "$WORKERS" > "$WORK/mlflow.log" 2>&1 &
SGDSERVE_PORT=8151 SGDSERVE_WORKERS=$WORKERS SGDSERVE_LOG_LEVEL=warning SGDSERVE_MODEL_DIR="$WORK/store" \
  .venv/bin/sgdserve serve > "$WORK/sgdserve.log" 2>&1 &
trap 'pkill -f "mlflow models serve" || true; pkill -f "uvicorn.*8150" || true; pkill -f "SGDSERVE_PORT=8151" || true; kill %2 2>/dev/null || true' EXIT
sleep 12
url() { [ "$1" = mlflow ] && echo http://127.0.0.1:8150/invocations || echo http://127.0.0.1:8151/predict; }
for name in mlflow sgdserve; do wrk -t1 -c16 -d2s -s "$WORK/$name.lua" "$(url $name)" > /dev/null; done
echo "| round | server | workers | requests/s | p99 |"
echo "|---|---|---:|---:|---:|"
for round in 1 2 3; do
  for name in mlflow sgdserve; do
    out=$(wrk -t1 -c16 -d5s --latency -s "$WORK/$name.lua" "$(url $name)")
    echo "| $round | $name | $WORKERS | $(echo "$out" | awk '/Requests\/sec/ {print $2}') | $(echo "$out" | awk '$1 == "99%" {print $2}') |"
  done
done
