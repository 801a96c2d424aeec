#!/usr/bin/env bash
# SMRA-Sprites bench on one GPU in one call (docs/bench-sprites.md, "On a GPU"): every case in its own process,
# all sharing the GPU (the lab's models are small, a step is launch-bound). Writes at most 8 small files to OUT.
#
#   scripts/bench_sprites_gpu.sh main OUT      8 cases x 2 seeds: full, no_sura, no_mora, dense, base (VARIANTS),
#                                               with the diagnosed settings
#                                               -> OUT/main-table.md, main-results.json, main-results.csv, main-log.txt
#   scripts/bench_sprites_gpu.sh recipes OUT   `paper` against `official` (RECIPES), each as its recipe is written:
#                                               heart and star x figure-eight and spiral x 2 seeds, full, no_mora, base
#                                               (VARIANTS)
#                                               -> OUT/{paper,official}-table.md, -results.json, -log.txt
#   scripts/bench_sprites_gpu.sh mora OUT      a motion LoRA on its own 2 spiral clips (self-reproduction), 400
#                                               steps, `paper`: no MoRA, MoRA, MoRA with each diagnosed setting
#                                               and both -> OUT/mora-table.md
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
# Past LIMIT seconds (540) the bench stops; the table of the cases finished by then is what comes back.
limit=(timeout --signal=INT --kill-after=20 "${LIMIT:-540}")
bench=("${PYTHON:-python3}" -m smrabooth bench sprites --device "${DEVICE:-cuda}" --seeds 2 --no-progress --overwrite
       --subject-steps "${SUBJECT_STEPS:-150}" --motion-steps "${MOTION_STEPS:-400}" --gen-steps "${GEN_STEPS:-20}")
[ -n "${MODEL:-}" ] && bench+=(--model "$MODEL")
# shellcheck disable=SC2206
[ -n "${EXTRA:-}" ] && bench+=($EXTRA)

case $what in
main)
    "${limit[@]}" "${bench[@]}" --out "$work/main" --jobs "${JOBS:-8}" \
        --variants "${VARIANTS:-full,no_sura,no_mora,dense,base}" \
        --subject-layers q,k,ffn.0 --mora-reference decoded --mora-max-sigma 0.5 > "$work-main.log" 2>&1 || true
    cp "$work-main.log" "$out/main-log.txt"
    for f in table.md results.json results.csv; do cp "$work/main/$f" "$out/main-$f" || true; done
    ;;
recipes)
    for recipe in ${RECIPES:-paper official}; do
        "${limit[@]}" "${bench[@]}" --out "$work/$recipe" --jobs "${JOBS:-4}" --recipe "$recipe" \
            --subjects heart,star --variants "${VARIANTS:-full,no_mora,base}" --no-subject-stills \
            > "$work-$recipe.log" 2>&1 &
    done
    wait
    for recipe in ${RECIPES:-paper official}; do
        cp "$work-$recipe.log" "$out/$recipe-log.txt"
        for f in table.md results.json; do cp "$work/$recipe/$f" "$out/$recipe-$f" || true; done
    done
    ;;
mora)
    # does MoRA help a motion LoRA draw its own clips once its target is reachable? 4 LoRAs at once (400 steps)
    sr=("${PYTHON:-python3}" scripts/check_motion_self_reproduction.py --clips 2 --steps "${MOTION_STEPS:-400}"
        --recipes paper --sprite-scales 1 --seeds 0,1 --device "${DEVICE:-cuda}" --no-progress)
    [ -n "${MODEL:-}" ] && sr+=(--model "$MODEL")
    runs=("plain,mora" "mora --set mora_reference=decoded" "mora --set mora_max_sigma=0.5"
          "mora --set mora_reference=decoded --set mora_max_sigma=0.5")
    for i in 0 1 2 3; do
        # shellcheck disable=SC2086
        "${limit[@]}" "${sr[@]}" --out "$work/sr$i" --kinds ${runs[$i]} > "$work-sr$i.log" 2>&1 &
    done
    wait
    for i in 0 1 2 3; do cat "$work/sr$i/table.md" >> "$out/mora-table.md" || tail -20 "$work-sr$i.log" >> "$out/mora-table.md"; done
    ;;
*)
    echo "usage: $0 main|recipes|mora OUT" >&2
    exit 2
    ;;
esac
ls -l "$out"
