# sourced: R (results), pack NAME, step NAME DIR MODEL DEADLINE WORKLOAD FLAGS
set -u
FINAL_OUT=$OUT; R=/tmp/r; mkdir -p $R
source scripts/carried_wheels.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee $R/gpu.txt
pack() { tar czf $FINAL_OUT/$1.tgz -C $R . ; }
step() {
  local name=$1 dir=$2 model=$3 dl=$4; echo "=== $name $(date -u +%T)"
  (cd $dir && export PYTHONPATH=/tmp/site:$PWD && OUT=$R/$name BENCH_DEADLINE_S=$dl BENCH_WORKLOAD="$5" BENCH_FLAGS="$6" bash scripts/gpu_bench.sh $model > $R/$name.out 2>&1)
  echo "rc $? $(date -u +%T)"; grep -E "documents/s \(|^docvlm|^seed|ratio|identical|Error|error|vision attention" $R/$name.out | tail -10
}
