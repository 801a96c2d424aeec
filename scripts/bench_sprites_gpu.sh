#!/usr/bin/env bash
# SMRA-Sprites bench on one GPU in one call (docs/bench-sprites.md, "On a GPU"): every case in its own process,
# all sharing the GPU (the lab's models are small, a step is launch-bound). Writes at most 8 small files to OUT.
#
#   scripts/bench_sprites_gpu.sh main OUT      8 cases x 2 seeds: full, no_sura, no_mora, dense, base (VARIANTS),
#                                               with the diagnosed settings
#                                               -> OUT/main-table.md, main-results.json, main-results.csv, main-log.txt
#   scripts/bench_sprites_gpu.sh recipes OUT   `paper` against `official`, each as its recipe is written:
#                                               heart and star x figure-eight and spiral x 2 seeds, full, no_mora, base
#                                               -> OUT/{paper,official}-table.md, -results.json, -log.txt
#
# Environment: DEVICE (cuda), MODEL (the shipped bundle), SUBJECT_STEPS (150), MOTION_STEPS (400), JOBS (8 or 4
# per recipe), VARIANTS, LIMIT (540 s), PYTHON (python3), WORK (/tmp/smra-bench). A CPU check with tiny counts:
#   DEVICE=cpu SUBJECT_STEPS=2 MOTION_STEPS=2 GEN_STEPS=2 EXTRA=--no-motion-fidelity scripts/bench_sprites_gpu.sh main /tmp/o
set -euo pipefail
what=${1:?main or recipes}
out=${2:?output folder}
mkdir -p "$out"
work=${WORK:-/tmp/smra-bench}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export SMRABOOTH_CACHE=${SMRABOOTH_CACHE:-$work/cache}
bench=("${PYTHON:-python3}" -m smrabooth bench sprites --device "${DEVICE:-cuda}" --seeds 2 --no-progress --overwrite
       --subject-steps "${SUBJECT_STEPS:-150}" --motion-steps "${MOTION_STEPS:-400}" --gen-steps "${GEN_STEPS:-20}")
[ -n "${MODEL:-}" ] && bench+=(--model "$MODEL")
# shellcheck disable=SC2206
[ -n "${EXTRA:-}" ] && bench+=($EXTRA)

# Past LIMIT seconds (540) the bench stops; the table of the cases finished by then is what comes back.
limit=(timeout --signal=INT --kill-after=20 "${LIMIT:-540}")
case $what in
main)
    "${limit[@]}" "${bench[@]}" --out "$work/main" --jobs "${JOBS:-8}" \
        --variants "${VARIANTS:-full,no_sura,no_mora,dense,base}" \
        --subject-layers q,k,ffn.0 --mora-reference decoded --mora-max-sigma 0.5 > "$work-main.log" 2>&1 || true
    cp "$work-main.log" "$out/main-log.txt"
    for f in table.md results.json results.csv; do cp "$work/main/$f" "$out/main-$f" || true; done
    ;;
recipes)
    for recipe in paper official; do
        "${limit[@]}" "${bench[@]}" --out "$work/$recipe" --jobs "${JOBS:-4}" --recipe "$recipe" \
            --subjects heart,star --variants full,no_mora,base --no-subject-stills > "$work-$recipe.log" 2>&1 &
    done
    wait
    for recipe in paper official; do
        cp "$work-$recipe.log" "$out/$recipe-log.txt"
        for f in table.md results.json; do cp "$work/$recipe/$f" "$out/$recipe-$f" || true; done
    done
    ;;
*)
    echo "usage: $0 main|recipes OUT" >&2
    exit 2
    ;;
esac
ls -l "$out"
