# Sourced by the GPU scripts (gpu_bench.sh, scaling.sh): the wheels carried in .whl/ (hydra-core,
# omegaconf, antlr4, pypdfium2: the GPU image lacks them) go into /tmp/site, on PYTHONPATH.
# Installed once per machine: a run started beside another must not install over its imports.
if [ -d .whl ]; then
    [ -d /tmp/site/hydra ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site:$PWD
fi
