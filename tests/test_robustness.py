"""Nothing gets past the front door: every bad setting, path or file is one line naming the flag, the value and
what is accepted, before any model loads; never a traceback, never a silent success.

CASES is one table (argv, exit status, a piece of the one-line error) run through the real CLI `main()` in
process; a few run as real subprocesses too. To add a case, add a row: {name} placeholders are the files of
the `world` fixture.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_random_lora
from safetensors.torch import save_file

from smrabooth.cli import main

ROOT = Path(__file__).resolve().parents[1]
G = ["generate", "--model", "{model}", "--prompt", "a dog", "--frames", "5", "--height", "32", "--width", "32",
     "--out", "{tmp}/v.mp4"]
TS = ["train-subject", "--model", "{model}", "--data", "{subject}", "--out", "{tmp}/run", "--encoder", "{tmp}"]
TM = ["train-motion", "--model", "{model}", "--data", "{motion}", "--out", "{tmp}/run", "--frames", "9",
      "--height", "32", "--width", "32", "--window", "2", "--window-stride", "1", "--drop-frames", "1"]
PS = ["prepare-subject", "{image}", "--name", "dog", "--out", "{tmp}/ps", "--segmenter", "none"]
PM = ["prepare-motion", "{video}", "--name", "move", "--caption", "a person S* moving", "--out", "{tmp}/pm"]
PR = ["prompts", "--subjects", "{subject}", "--motions", "{motion}", "--out", "{tmp}/prompts.json"]
EV = ["evaluate", "--videos", "{video}", "--out", "{tmp}/ev", "--metrics", "clip_t"]
NO_CUDA = not torch.cuda.is_available()

# (argv, exit status, piece of the one-line error)
CASES = [
    # ---- generate: numbers
    (G + ["--frames", "10"], 2, "--frames 10 is not 4k+1"),
    (G + ["--frames", "0"], 2, "--frames 0: must be a whole number in [1, 1001]"),
    (G + ["--frames", "-3"], 2, "--frames -3: must be"),
    (G + ["--frames", "100001"], 2, "--frames 100001: must be"),
    (G + ["--height", "0"], 2, "--height 0: must be a whole number in [16, 2048]"),
    (G + ["--height", "40"], 2, "--height 40: must be a multiple of 16"),
    (G + ["--width", "100000"], 2, "--width 100000: must be a whole number in [16, 2048]"),
    (G + ["--width", "-32"], 2, "--width -32"),
    (G + ["--steps", "0"], 2, "--steps 0: must be a whole number in [1, 1000]"),
    (G + ["--steps", "-3"], 2, "--steps -3"),
    (G + ["--guidance", "nan"], 2, "--guidance nan: must be a finite number in [0, 100]"),
    (G + ["--guidance", "inf"], 2, "--guidance inf"),
    (G + ["--guidance", "-1"], 2, "--guidance -1"),
    (G + ["--shift", "-1"], 2, "--shift -1: must be a finite number in (0, 100]"),
    (G + ["--shift", "0"], 2, "--shift 0"),
    (G + ["--shift", "nan"], 2, "--shift nan"),
    (G + ["--fps", "0"], 2, "--fps 0: must be a finite number in (0, 240]"),
    (G + ["--fps", "-15"], 2, "--fps -15"),
    (G + ["--fps", "nan"], 2, "--fps nan"),
    (G + ["--subject-scale", "inf"], 2, "--subject-scale inf: must be a finite number in [-10, 10]"),
    (G + ["--subject-scale", "nan"], 2, "--subject-scale nan"),
    (G + ["--subject-scale-early", "nan"], 2, "--subject-scale-early nan"),
    (G + ["--motion-scale", "1e9"], 2, "--motion-scale 1e+09"),
    (G + ["--seed", "-1"], 2, "--seed -1: must be a whole number"),
    (G + ["--t-point", "99", "--steps", "3"], 2, "--t-point 99: must be a whole number in [0, 3]"),
    (G + ["--t-point", "-1"], 2, "--t-point -1"),
    (G + ["--scheduler", "ddim"], 2, "invalid choice: 'ddim'"),
    (G + ["--frames", "ten"], 2, "--frames: invalid int value: 'ten'"),
    (G + ["--subject-layers", "q,zz"], 2, "unknown LoRA layer type"),
    (G + ["--cache", "first-block:nan"], 2, "--cache 'first-block:nan'"),
    (G + ["--cache", "first-block:-1"], 2, "the threshold must be a positive number"),
    # ---- generate: paths and files
    (G + ["--out", "{tmp}/v.avi"], 2, "must end in .mp4"),
    (G + ["--out", "{file}/v.mp4"], 2, "is a file, not a folder"),
    (G + ["--out", "{file}/deeper/v.mp4"], 2, "is a file, not a folder"),
    (G + ["--out", "{dir_mp4}"], 2, "is a folder, a file name is needed"),
    (G + ["--save-frames", "{file}"], 2, "--save-frames"),
    (G + ["--save-frames", "{file}/frames"], 2, "is a file, not a folder"),
    (G + ["--subject-lora", "{tmp}/missing.safetensors"], 2, "--subject-lora"),
    (G + ["--subject-lora", "{tmp}"], 2, "is a folder, a file is needed"),
    (G + ["--subject-lora", "{file}"], 2, "not a readable safetensors LoRA file"),
    (G + ["--subject-lora", "{lora_rank}"], 2, "has lora_A of rank 4 but lora_B of rank 3"),
    (G + ["--motion-lora", "{lora_nan}"], 2, "holds NaN or infinite values"),
    (G + ["--motion-lora", "{lora_inf}"], 2, "holds NaN or infinite values"),
    (G + ["--subject-lora", "{lora_no_b}"], 2, "has no lora_B tensor"),
    (G + ["--subject-lora", "{lora_widths}"], 2, "other attn1.to_q layers map"),
    (G + ["--subject-lora", "{lora_alpha0}"], 2, "alpha 0.0 is not a finite non-zero number"),
    (G + ["--subject-lora", "{lora_other}"], 2, "is not a Wan LoRA"),
    (G + ["--model", "{tmp}/nowhere/wan"], 2, "no such folder"),
    (G + ["--model", "{file}"], 2, "--model {file}: is a file"),
    (G + ["--model", "{tmp}"], 2, "is not a Wan diffusers model"),
    (G + ["--model", "models/wan/extra"], 2, "no such folder"),
    (G + ["--model", "{model_incomplete}"], 2, "is missing its vae/ folder"),
    (G + ["--device", "tpu"], 2, "--device tpu"),
    (G + ["--device", "cuda:banana"], 2, "not a device"),
    (G + ["--config", "{yaml_type}"], 2, "steps: 'ten' is not a whole number"),
    (G + ["--config", "{yaml_bool}"], 2, "guidance: True is not a number"),
    (G + ["--config", "{yaml_nan}"], 2, "--guidance nan"),
    (G + ["--config", "{yaml_broken}"], 2, "is not valid YAML"),
    (G + ["--config", "{yaml_list}"], 2, "must hold a mapping"),
    (G + ["--config", "{yaml_unknown}"], 2, "unknown setting(s) promt"),
    (G + ["--config", "{tmp}/missing.yaml"], 2, "does not exist"),
    (["generate", "--model", "{model}", "--out", "{tmp}/v.mp4"], 2, "--prompt is required"),
    # ---- train-subject
    (TS + ["--lr", "-1"], 2, "--lr -1: must be a finite number in (0, 1]"),
    (TS + ["--lr", "nan"], 2, "--lr nan"),
    (TS + ["--lr", "0"], 2, "--lr 0"),
    (TS + ["--lr", "inf"], 2, "--lr inf"),
    (TS + ["--resolution", "0"], 2, "--resolution 0: must be a whole number in [16, 2048]"),
    (TS + ["--resolution", "100000"], 2, "--resolution 100000"),
    (TS + ["--resolution", "40"], 2, "--resolution 40: must be a multiple of 16"),
    (TS + ["--checkpoint-every", "0"], 2, "--checkpoint-every 0: must be a whole number in [1,"),
    (TS + ["--checkpoint-every", "-1"], 2, "--checkpoint-every -1"),
    (TS + ["--alpha", "0"], 2, "--alpha 0: must be a finite number in (0,"),
    (TS + ["--alpha", "nan"], 2, "--alpha nan"),
    (TS + ["--rank", "0"], 2, "--rank 0"),
    (TS + ["--rank", "-4"], 2, "--rank -4"),
    (TS + ["--steps", "0"], 2, "--steps 0"),
    (TS + ["--sura-weight", "nan"], 2, "--sura-weight nan"),
    (TS + ["--sura-weight", "-1"], 2, "--sura-weight -1"),
    (TS + ["--sura-layer", "-1"], 2, "--sura-layer -1"),
    (TS + ["--projector-width", "0"], 2, "--projector-width 0"),
    (TS + ["--seed", "-5"], 2, "--seed -5"),
    (TS + ["--validate-every", "-1"], 2, "--validate-every -1"),
    (TS + ["--validate-every", "5"], 2, "--validate-every needs --validation-prompt"),
    (TS + ["--data", "{tmp}/missing"], 2, "--data {tmp}/missing: no such folder"),
    (TS + ["--data", "{file}"], 2, "--data {file}: is a file, a folder is needed"),
    (TS + ["--out", "{file}"], 2, "--out {file}: is a file, a folder is needed"),
    (TS + ["--out", "{file}/run"], 2, "is a file, not a folder"),
    (TS + ["--cache-dir", "{file}"], 2, "--cache-dir"),
    (TS + ["--encoder", "{tmp}/nowhere/dino"], 2, "--encoder {tmp}/nowhere/dino: no such folder"),
    (TS + ["--model", "{tmp}/nowhere/wan"], 2, "--model {tmp}/nowhere/wan: no such folder"),
    (TS + ["--device", "tpu"], 2, "--device tpu"),
    (TS + ["--mixed-precision", "fp8"], 2, "invalid choice: 'fp8'"),
    (TS + ["--resume", "--overwrite"], 2, "--resume and --overwrite exclude each other"),
    (TS + ["--resume"], 2, "nothing to resume in {tmp}/run"),
    (TS[:-4] + ["--out", "{subject}"], 2, "already holds files: pass --resume"),
    (TS[:-4] + ["--out", "{subject}", "--overwrite"], 2, "holds the input --data {subject}: --overwrite would delete"),
    # ---- train-motion
    (TM + ["--fps", "-15"], 2, "--fps -15: must be a finite number in (0, 240]"),
    (TM + ["--fps", "0"], 2, "--fps 0"),
    (TM + ["--flow-iters", "0"], 2, "--flow-iters 0: must be a whole number in [1, 100]"),
    (TM + ["--mora-weight", "nan"], 2, "--mora-weight nan"),
    (TM + ["--mora-weight", "-1"], 2, "--mora-weight -1"),
    (TM + ["--window", "0"], 2, "--window 0"),
    (TM + ["--window-stride", "0"], 2, "--window-stride 0"),
    (TM + ["--drop-frames", "-1"], 2, "--drop-frames -1"),
    (TM + ["--frames", "10"], 2, "--frames 10: Wan's VAE needs 4k+1 frames"),
    (TM + ["--frames", "0"], 2, "--frames 0"),
    (TM + ["--height", "0"], 2, "--height 0"),
    (TM + ["--width", "17"], 2, "--width 17: must be a multiple of 16"),
    (TM + ["--vae-store-frames", "-1"], 2, "--vae-store-frames -1"),
    (TM + ["--flow-chunk", "-1"], 2, "--flow-chunk -1"),
    (TM + ["--lr", "inf"], 2, "--lr inf"),
    (TM + ["--checkpoint-every", "0"], 2, "--checkpoint-every 0"),
    (TM + ["--alpha", "0"], 2, "--alpha 0"),
    (TM + ["--data", "{tmp}/missing"], 2, "--data {tmp}/missing: no such folder"),
    (TM + ["--out", "{file}"], 2, "--out {file}: is a file"),
    (TM + ["--flow-model", "{tmp}/nowhere/raft"], 2, "--flow-model {tmp}/nowhere/raft: no such folder"),
    (TM + ["--clip-timing", "middle"], 2, "invalid choice: 'middle'"),
    (TM + ["--mora-frame-range", "unit"], 2, "invalid choice: 'unit'"),
    (TS + ["--lora-dtype", "fp16"], 2, "invalid choice: 'fp16'"),
    # ---- prepare-subject
    (PS + ["--max-side", "-5"], 2, "--max-side -5: must be a whole number in [16, 16384]"),
    (PS + ["--max-side", "3"], 2, "--max-side 3"),
    (PS + ["--box-threshold", "2"], 2, "--box-threshold 2: must be a finite number in [0, 1]"),
    (PS + ["--mask-threshold", "nan"], 2, "--mask-threshold nan"),
    (PS + ["--fill-holes", "-1"], 2, "--fill-holes -1"),
    (PS + ["--text-threshold", "inf"], 2, "--text-threshold inf"),
    (PS + ["--out", "{file}"], 2, "--out {file}: is a file"),
    (PS + ["--masks", "{tmp}/missing"], 2, "--masks {tmp}/missing: no such folder"),
    (PS + ["--device", "tpu"], 2, "--device tpu"),
    (["prepare-subject", "{tmp}/missing.png", "--name", "dog", "--out", "{tmp}/ps"], 2, "image {tmp}/missing.png does not exist"),
    # ---- prepare-motion
    (PM + ["--fps", "0"], 2, "--fps 0: must be a whole number in [1, 240]"),
    (PM + ["--fps", "-15"], 2, "--fps -15"),
    (PM + ["--fps", "7.5"], 2, "--fps 7.5"),
    (PM + ["--fps", "nan"], 2, "--fps nan"),
    (PM + ["--frames", "-1"], 2, "--frames -1"),
    (PM + ["--start", "-1"], 2, "--start -1"),
    (PM + ["--start", "nan"], 2, "--start nan"),
    (PM + ["--end", "0"], 2, "--end 0: must be a finite number in (0,"),
    (PM + ["--start", "2", "--end", "1"], 2, "--end 1"),
    (PM + ["--out", "{file}"], 2, "--out {file}: is a file"),
    (PM + ["--device", "tpu"], 2, "--device tpu"),
    (["prepare-motion", "{tmp}/missing.mp4", "--name", "m", "--caption", "S*", "--out", "{tmp}/pm"], 2,
     "{tmp}/missing.mp4 does not exist"),
    # ---- prompts
    (PR + ["--per-pair", "0"], 2, "--per-pair 0"),
    (PR[:-1] + ["{file}/p.json"], 2, "is a file, not a folder"),
    (PR[:-1] + ["{tmp}"], 2, "is a folder, a file name is needed"),
    (PR + ["--backgrounds", "{tmp}/missing.txt"], 2, "--backgrounds {tmp}/missing.txt: no such file"),
    (PR + ["--exclude", "{tmp}"], 2, "--exclude {tmp}: is a folder"),
    (["prompts", "--subjects", "{tmp}/missing", "--motions", "{motion}", "--out", "{tmp}/p.json"], 2,
     "--subjects {tmp}/missing: no such folder"),
    # ---- lora info / convert
    (["lora", "info", "{tmp}/missing.safetensors"], 2, "FILE {tmp}/missing.safetensors: no such file"),
    (["lora", "info", "{tmp}"], 2, "is a folder, a file is needed"),
    (["lora", "info", "{lora_rank}"], 2, "has lora_A of rank 4 but lora_B of rank 3"),
    (["lora", "info", "{lora_nan}"], 2, "holds NaN or infinite values"),
    (["lora", "info", "{lora_no_b}"], 2, "has no lora_B tensor"),
    (["lora", "info", "{lora_widths}"], 2, "the file is inconsistent"),
    (["lora", "info", "{lora_base}"], 2, "was made for another model size"),
    (["lora", "info", "{file}"], 2, "not a readable safetensors LoRA file"),
    (["lora", "convert", "{tmp}/missing.safetensors", "{tmp}/o.safetensors", "--to", "comfyui"], 2,
     "INPUT {tmp}/missing.safetensors: no such file"),
    (["lora", "convert", "{lora}", "{tmp}", "--to", "comfyui"], 2, "OUTPUT"),
    (["lora", "convert", "{lora}", "{dir_st}", "--to", "comfyui"], 2, "is a folder, a file name is needed"),
    (["lora", "convert", "{lora}", "{file}/o.safetensors", "--to", "comfyui"], 2, "is a file, not a folder"),
    (["lora", "convert", "{lora}", "{lora}", "--to", "comfyui"], 2, "is the input INPUT"),
    (["lora", "convert", "{lora}", "{lora_nan}", "--to", "comfyui"], 2, "exists; pass --overwrite"),
    (["lora", "convert", "{lora}", "{lora}", "--to", "comfyui", "--overwrite"], 2, "is the input INPUT"),
    (["lora", "convert", "{lora}", "{tmp}/o.txt", "--to", "comfyui"], 2, "must end in .safetensors"),
    (["lora", "convert", "{lora_nan}", "{tmp}/o.safetensors", "--to", "comfyui"], 2, "NaN"),
    (["lora", "convert", "{lora}", "{tmp}/o.safetensors", "--to", "kohya"], 2, "invalid choice: 'kohya'"),
    # ---- tiny-model
    (["tiny-model", "--out", "{file}"], 2, "--out {file}: is a file, a folder is needed"),
    (["tiny-model", "--out", "{file}/m"], 2, "is a file, not a folder"),
    (["tiny-model", "--out", "{tmp}/m", "--seed", "-1"], 2, "--seed -1"),
    # ---- evaluate
    (EV + ["--batch-size", "0"], 2, "--batch-size 0: must be a whole number in [1, 4096]"),
    (EV + ["--batch-size", "-1"], 2, "--batch-size -1"),
    (EV + ["--mf-grid", "0"], 2, "--mf-grid 0"),
    (EV + ["--mf-grid", "1"], 2, "--mf-grid 1"),
    (EV + ["--searaft-iters", "0"], 2, "--searaft-iters 0"),
    (EV + ["--out", "{file}"], 2, "--out {file}: is a file"),
    (EV + ["--device", "tpu"], 2, "--device tpu"),
    (EV + ["--aesthetic-head", "{tmp}/missing.pth"], 2, "--aesthetic-head {tmp}/missing.pth: no such file"),
    (EV + ["--reference-video", "{tmp}/missing.mp4"], 2, "--reference-video {tmp}/missing.mp4: no such path"),
    (EV + ["--cotracker-repo", "{file}"], 2, "--cotracker-repo {file}: is a file"),
    (["evaluate", "--videos", "{tmp}/missing.mp4", "--out", "{tmp}/ev"], 2, "video {tmp}/missing.mp4 does not exist"),
    # ---- study
    (["study", "build", "--manifest", "{tmp}/missing.csv", "--out", "{tmp}/st"], 2, "--manifest {tmp}/missing.csv"),
    (["study", "build", "--manifest", "{file}", "--out", "{file}"], 2, "--out {file}: is a file"),
    (["study", "build", "--manifest", "{file}", "--out", "{tmp}/st", "--seed", "-1"], 2, "--seed -1"),
    (["study", "tally", "{tmp}/missing.json"], 2, "ANSWERS {tmp}/missing.json: no such file"),
    (["study", "tally", "{file}", "--key", "{tmp}/missing.json"], 2, "--key {tmp}/missing.json: no such file"),
    (["study", "tally", "{file}", "--json", "{tmp}"], 2, "--json {tmp}: is a folder"),
    # ---- issue 34: huge integers, settings of the wrong shape, YAML bombs
    (G + ["--frames", "1" + "0" * 400], 2, "--frames 100... (401 digits): must be a whole number in [1, 1001]"),
    (TS + ["--steps", "1" + "0" * 400], 2, "--steps 100... (401 digits): must be a whole number"),
    (G + ["--seed", "-" + "9" * 400], 2, "--seed -999... (400 digits): must be a whole number"),
    (G + ["--fps", "23.9761234"], 2, "--fps 23.9761234 cannot be stored exactly in an mp4"),
    (G + ["--config", "{yaml_dup}"], 2, "line 2: key 'steps' is given twice"),
    (G + ["--config", "{yaml_intkey}"], 2, "key 1 is not a name"),
    (G + ["--config", "{yaml_deep}"], 2, "nested more than 64 levels deep"),
    (G + ["--config", "{yaml_bomb}"], 2, "once its aliases (&name / *name) are expanded"),
    (G + ["--config", "{yaml_list_str}"], 2, "negative_prompt: [1, 2, 3] is not text"),
    (G + ["--config", "{yaml_dict_str}"], 2, "scheduler: {{'a': 1}} is not text"),
    (G + ["--config", "{yaml_huge}"], 2, "guidance: 100000"),
    # ---- issue 34: LoRA files
    (G + ["--subject-lora", "{lora_int8}"], 2, "is int8; a LoRA holds float32, float16 or bfloat16"),
    (G + ["--subject-lora", "{lora_dup}"], 2, "holds the layer blocks.0.attn1.to_q (lora_A) twice"),
    (["lora", "info", "{lora_meta_list}"], 2, "holds a list, but the 'smrabooth' entry must be a JSON object"),
    (["lora", "info", "{lora_meta_base}"], 2, "its metadata's base 'wan' is not a model's sizes"),
    (["lora", "info", "{lora_rank0}"], 2, "has rank 0"),
    (["lora", "info", "{lora_alpha2}"], 2, "its alpha [1, 2] is not a finite non-zero number"),
    (["lora", "info", "{lora_comfy_alpha2}"], 2, "alpha holds 2 values; a ComfyUI alpha is one number"),
    (["lora", "info", "{unet_nan}"], 2, "holds NaN or infinite values"),
    (["lora", "info", "{unet_a_only}"], 2, "has no lora_B tensor"),
    (["lora", "info", "{unet_int8}"], 2, "is int8"),
    (["lora", "info", "{unet_meta}"], 2, "its alpha 'x' is not a finite non-zero number"),
    # ---- issue 34: data files
    (TS[:-4] + ["--data", "{subject_comma}", "--out", "{tmp}/run"], 2, "line 2 has 3 fields but the header has 2"),
    (TS[:-4] + ["--data", "{subject_dotdot}", "--out", "{tmp}/run"], 2,
     "'../images/00.png' is not a path inside the data folder"),
    (PS[:1] + ["{png_huge}"] + PS[2:], 2, "has more pixels than smrabooth reads"),
    (PM[:1] + ["{gif_tiny}"] + PM[2:], 2, "is 1x1 pixels: too small"),
    (EV + ["--prompts", "{prompts_list}"], 2, "holds a list, but a prompts file must be a JSON object"),
    (EV + ["--prompts", "{prompts_nested}"], 2, "the prompt of 'clip.mp4' is not text"),
    (EV + ["--prompts", "{prompts_csv}"], 2, "has the columns file,text; a prompts CSV needs video,prompt"),
    (["evaluate", "--manifest", "{manifest_conflict}", "--out", "{tmp}/ev"], 2,
     "line 3: m clip.mp4 was listed on line 2 with another prompt"),
    (["study", "build", "--manifest", "{manifest_text}", "--out", "{tmp}/st"], 2,
     "is not a video (.avi, .gif, .mkv, .mov, .mp4, .webm): the study page would publish it"),
    (["study", "build", "--manifest", "{manifest_fake_mp4}", "--out", "{tmp}/st"], 2, "is not a readable video"),
    (["study", "tally", "{answers_deep}"], 2, "nested more than 64 levels deep"),
    (["reproduce", "--data", "{tmp}", "--model", "{model}", "--out", "{tmp}/r", "--dry-run", "--gpus", "-3"], 2,
     "--gpus -3: must be a whole number in [1, 4096]"),
    # ---- issue 34, on the code added since: the lab's commands, per-expert LoRAs, SEA-RAFT configs
    (TM + ["--flow-model", "{searaft_huge}"], 2, "config.json: SEA-RAFT 'dim' 100000000: must be a whole number"),
    (TM + ["--flow-model", "{searaft_text}"], 2, "config.json: SEA-RAFT 'dim' 'x': must be a whole number"),
    (["lora", "info", "{lora_expert}"], 2, "its metadata's expert 'middle' is not high or low"),
    (TS[:-4] + ["--data", "{subject_header_break}", "--out", "{tmp}/run"], 2, "that holds a line break"),
    (["demo", "--model", "{bundle_damaged}", "--out", "{tmp}/d"], 2, "sprites.json is not valid JSON"),
    (["demo", "--model", "{bundle_sizes}", "--out", "{tmp}/d"], 2, "sprites.json: size 'big': must be a whole number"),
    (["demo", "--gen-steps", "1" + "0" * 400, "--out", "{tmp}/d"], 2, "--gen-steps 100... (401 digits): must be"),
    (["demo", "--guidance", "nan", "--out", "{tmp}/d"], 2, "--guidance nan: must be a finite number in [0, 100]"),
    (["demo", "--subject", "²", "--out", "{tmp}/d"], 2, "--subject: unknown held-out subject '²'"),
    (["bench", "sprites", "--seeds", "1" + "0" * 400, "--out", "{tmp}/b"], 2, "--seeds 100... (401 digits)"),
    (["sprites", "sample", "--n", "1" + "0" * 400, "--out", "{tmp}/s"], 2, "--n 100... (401 digits): must be"),
    (["sprites", "subject", "--size", "3", "--out", "{tmp}/s"], 2, "--size 3: must be a whole number in [8, 2048]"),
    # ---- an output in the place of an input, or of files the command did not write
    (PR[:-1] + ["{backgrounds}", "--backgrounds", "{backgrounds}"], 2,
     "is the input --backgrounds {backgrounds}; writing it would destroy it"),
    (["study", "tally", "{answers}", "--key", "{study_key}", "--json", "{study_key}"], 2, "is the input --key"),
    (["evaluate", "--manifest", "{manifest_named_table}", "--out", "{manifest_dir}"], 2,
     "is the input --manifest {manifest_named_table}; writing it would destroy it"),
    (G + ["--save-frames", "{frames_mine}"], 2, "holds frame_0000.png, which smrabooth generate did not write"),
    (TM[:4] + ["{motion_tiny}"] + TM[5:], 2, "tiny.gif is 1x1 pixels: too small to train on"),
]
if NO_CUDA:
    CASES += [(base + ["--device", "cuda"], 2, "--device cuda: CUDA is not available")
              for base in (G, TS, TM, PS, PM, EV)]
    CASES += [(G + ["--device", "cuda:3"], 2, "--device cuda:3: CUDA is not available")]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    """The files the table's placeholders name: a tiny model, good and broken LoRAs, YAML files, data folders."""
    from diffusers import WanTransformer3DModel
    from test_train_motion import make_motion_folder
    from test_train_subject import make_subject_folder

    from smrabooth.lora.files import save_lora
    from smrabooth.video import write_video

    root = tmp_path_factory.mktemp("world")
    tr = WanTransformer3DModel.from_pretrained(tiny_model_dir / "transformer")
    w = {"model": str(tiny_model_dir), "file": root / "file.txt", "dir_mp4": root / "dir.mp4",
         "dir_st": root / "dir.safetensors"}
    w["file"].write_text("not what was asked for\n")
    w["dir_mp4"].mkdir()
    w["dir_st"].mkdir()
    lora = make_random_lora(tr, rank=4, kind="subject")
    w["lora"] = save_lora(root / "lora.safetensors", lora)
    raw = {f"transformer.{k}": v for k, v in lora.tensors.items()}
    key_b = "transformer.blocks.0.attn1.to_q.lora_B.weight"
    broken = {
        "lora_rank": {**raw, key_b: torch.randn(raw[key_b].shape[0], 3)},
        "lora_nan": {**raw, key_b: torch.full_like(raw[key_b], math.nan)},
        "lora_inf": {**raw, key_b: torch.full_like(raw[key_b], math.inf)},
        "lora_no_b": {k: v for k, v in raw.items() if k != key_b},
        "lora_widths": {**raw, "transformer.blocks.1.attn1.to_q.lora_A.weight": torch.randn(4, 7),
                        "transformer.blocks.1.attn1.to_q.lora_B.weight": torch.randn(5, 4)},
        "lora_other": {"model.layer.weight": torch.zeros(2, 2)},
    }
    for name, tensors in broken.items():
        w[name] = root / f"{name}.safetensors"
        save_file(tensors, str(w[name]))
    # a LoRA whose metadata says it was made for a model 4x wider than its tensors
    bad_base = make_random_lora(tr, rank=4)
    bad_base.info["base"] = {**bad_base.info["base"], "dim": bad_base.info["base"]["dim"] * 4}
    w["lora_base"] = root / "lora_base.safetensors"
    from smrabooth.lora import files as lora_files
    tensors = lora_files.from_canonical(bad_base.tensors, "diffusers", 4, 4.0)
    save_file(tensors, str(w["lora_base"]), metadata={"format": "pt", "smrabooth": json.dumps(bad_base.info)})
    w["lora_alpha0"] = root / "lora_alpha0.safetensors"
    save_file(raw, str(w["lora_alpha0"]), metadata={"format": "pt", "lora_adapter_metadata": json.dumps(
        {"transformer.lora_alpha": 0.0, "transformer.r": 4})})
    incomplete = root / "incomplete"
    incomplete.mkdir()
    (incomplete / "model_index.json").write_text((tiny_model_dir / "model_index.json").read_text())
    for sub in ("transformer", "text_encoder", "tokenizer", "scheduler"):
        (incomplete / sub).mkdir()
    w["model_incomplete"] = incomplete
    yamls = {"yaml_type": "steps: ten\n", "yaml_bool": "guidance: yes\n", "yaml_nan": "guidance: .nan\n",
             "yaml_broken": "frames: [5,\n  steps: 3\n", "yaml_list": "- 1\n- 2\n", "yaml_unknown": "promt: typo\n"}
    for name, text in yamls.items():
        w[name] = root / f"{name}.yaml"
        w[name].write_text(text)
    issue34_files(root, w, raw, key_b, tr)
    w["subject"] = make_subject_folder(root / "subject")
    w["image"] = w["subject"] / "images" / "00.png"
    w["motion"] = make_motion_folder(root / "motion")
    w["video"] = root / "clip.mp4"
    write_video(np.zeros((5, 32, 32, 3), np.uint8), w["video"], fps=8)
    return {k: str(v) for k, v in w.items()}


def issue34_files(root, w, raw, key_b, tr):
    """The malformed files of issue 34's rows: YAML bombs, LoRAs of the wrong dtype or shape, data files."""
    from PIL import Image
    from test_train_subject import make_subject_folder


    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 9):
        bomb += f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i > 1 else '*a'] * 9)}]\n"
    yamls = {"yaml_dup": "steps: 3\nsteps: 4\n", "yaml_intkey": "1: 2\n", "yaml_deep": "x: " + "[" * 50000,
             "yaml_bomb": bomb, "yaml_list_str": "negative_prompt: [1, 2, 3]\n", "yaml_dict_str": "scheduler: {a: 1}\n",
             "yaml_huge": "guidance: 1" + "0" * 400 + "\n"}
    for name, text in yamls.items():
        w[name] = root / f"{name}.yaml"
        w[name].write_text(text)
    wan = {"lora_int8": ({**raw, key_b: raw[key_b].to(torch.int8)}, {}),
           "lora_dup": ({**raw, "blocks.0.attn1.to_q.lora_A.weight":
                         raw["transformer.blocks.0.attn1.to_q.lora_A.weight"].clone()}, {}),
           "lora_meta_list": (raw, {"smrabooth": "[1, 2]"}),
           "lora_meta_base": (raw, {"smrabooth": json.dumps({"base": "wan"})}),
           "lora_rank0": ({k: v[:0] if k.endswith("lora_A.weight") else v[:, :0] for k, v in raw.items()}, {}),
           "lora_alpha2": (raw, {"lora_adapter_metadata": json.dumps({"transformer.lora_alpha": [1, 2]})})}
    from smrabooth.lora.convert import from_canonical

    comfy = from_canonical({k.removeprefix("transformer."): v for k, v in raw.items()}, "comfyui", 4, 4.0)
    wan["lora_comfy_alpha2"] = ({**comfy, "diffusion_model.blocks.0.self_attn.q.alpha": torch.tensor([1.0, 2.0])}, {})
    for name, (tensors, meta) in wan.items():
        w[name] = root / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(w[name]), metadata={"format": "pt", **meta})
    pair = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.randn(4, 8),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.randn(8, 4)}
    a, b = list(pair)
    unet = {"unet_nan": ({a: pair[a], b: torch.full((8, 4), math.nan)}, {}), "unet_a_only": ({a: pair[a]}, {}),
            "unet_int8": ({a: pair[a].to(torch.int8), b: pair[b]}, {}),
            "unet_meta": (pair, {"smrabooth": json.dumps({"alpha": "x"})})}
    for name, (tensors, meta) in unet.items():
        w[name] = root / f"{name}.safetensors"
        save_file(tensors, str(w[name]), metadata={"format": "pt", **meta})
    comma = make_subject_folder(root / "subject_comma")
    (comma / "metadata.csv").write_text("file_name,text\n00.png,a picture of V* dog, running\n")
    w["subject_comma"] = comma
    dotdot = make_subject_folder(root / "subject_dotdot")
    (dotdot / "metadata.csv").write_text("file_name,text\n../images/00.png,a picture of V* dog\n")
    w["subject_dotdot"] = dotdot
    w["png_huge"] = root / "huge.png"
    w["png_huge"].write_bytes(png_header(30000, 30000))
    w["gif_tiny"] = root / "tiny.gif"
    frames = [Image.new("RGB", (1, 1), (i * 60, 0, 0)) for i in range(4)]
    frames[0].save(w["gif_tiny"], save_all=True, append_images=frames[1:], duration=100)
    texts = {"prompts_list.json": '["a dog"]', "prompts_nested.json": '{"clip.mp4": {"x": 1}}',
             "prompts.csv": "file,text\nclip.mp4,a dog\n", "notes.txt": "not a video\n", "fake.mp4": "not a video\n",
             "answers_deep.json": "[" * 100000 + "]" * 100000}
    for name, text in texts.items():
        (root / name).write_text(text)
    w.update(prompts_list=root / "prompts_list.json", prompts_nested=root / "prompts_nested.json",
             prompts_csv=root / "prompts.csv", answers_deep=root / "answers_deep.json")
    from smrabooth.video import write_video

    write_video(np.zeros((5, 32, 32, 3), np.uint8), root / "clip.mp4", fps=8)
    later_files(root, w, raw)
    manifests = {"manifest_conflict": "method,video,prompt\nm,clip.mp4,a dog\nm,clip.mp4,a cat\n",
                 "manifest_text": "method,video\nm,notes.txt\n", "manifest_fake_mp4": "method,video\nm,fake.mp4\n"}
    for name, text in manifests.items():
        w[name] = root / f"{name}.csv"
        w[name].write_text(text)


def later_files(root, w, raw):
    """The rows on code added after issue 34's rows: SEA-RAFT folders of damaged configs, a LoRA for no Wan2.2
    expert, a metadata.csv header left open, SMRA-Sprites bundles of damaged sprites.json; inputs an output would
    take the place of."""
    from PIL import Image
    from test_train_subject import make_subject_folder

    (root / "backgrounds.json").write_text("a beach\n")
    (root / "answers.json").write_text(json.dumps({"study_id": "s", "participant": "p", "ratings": []}))
    (root / "study_key.json").write_text(json.dumps({"study_id": "s", "cases": []}))
    (root / "manifests").mkdir()
    (root / "manifests" / "table.csv").write_text("method,video,prompt\nm,../clip.mp4,a dog\n")
    (root / "frames_mine").mkdir()
    Image.new("RGB", (4, 4)).save(root / "frames_mine" / "frame_0000.png")
    (root / "motion_tiny").mkdir()
    frames = [Image.new("RGB", (1, 1), (i * 20, 0, 0)) for i in range(12)]
    frames[0].save(root / "motion_tiny" / "tiny.gif", save_all=True, append_images=frames[1:], duration=60)
    (root / "motion_tiny" / "metadata.csv").write_text("file_name,text\ntiny.gif,a ball S* moving\n")
    w["motion_tiny"] = root / "motion_tiny"
    w.update(backgrounds=root / "backgrounds.json", answers=root / "answers.json", study_key=root / "study_key.json",
             manifest_named_table=root / "manifests" / "table.csv", manifest_dir=root / "manifests",
             frames_mine=root / "frames_mine")

    for name, config in (("searaft_huge", {"dim": 10**8}), ("searaft_text", {"dim": "x"})):
        (root / name).mkdir()
        (root / name / "model.safetensors").write_bytes(b"")
        (root / name / "config.json").write_text(json.dumps(config))
        w[name] = root / name
    w["lora_expert"] = root / "lora_expert.safetensors"
    save_file(raw, str(w["lora_expert"]), metadata={"format": "pt", "smrabooth": json.dumps({"expert": "middle"})})
    broken = make_subject_folder(root / "subject_header_break")
    (broken / "metadata.csv").write_text('file_name,"text\n00.png,a picture of V* ball\n')
    w["subject_header_break"] = broken
    for name, info in (("bundle_damaged", '{"preset": "small",'), ("bundle_sizes", json.dumps(
            {"config": {"size": "big", "frames": 9, "fps": 15}}))):
        bundle = root / name
        for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", "dinov2", "searaft"):
            (bundle / sub).mkdir(parents=True)
        (bundle / "model_index.json").write_text((Path(w["model"]) / "model_index.json").read_text())
        (bundle / "sprites.json").write_text(info)
        w[name] = bundle


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG that says it is width x height pixels (the pixels themselves are not there)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + \
        chunk(b"IEND", b"")


def fill(argv, world, tmp):
    return [a.format(tmp=tmp, **world) for a in argv]


@pytest.mark.parametrize("argv, status, message", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_bad_input_is_one_line_before_any_model_loads(argv, status, message, world, tmp_path, capsys, monkeypatch):
    import diffusers

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(diffusers.WanPipeline, "from_pretrained", no_model)
    monkeypatch.setattr(diffusers.AutoencoderKLWan, "from_pretrained", no_model)
    try:
        rc = main(fill(argv, world, tmp_path))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out = capsys.readouterr()
    err = out.err.strip()
    assert rc == status, err
    assert fill([message], world, tmp_path)[0] in err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "wrote" not in out.out


SUBPROCESS_CASES = [
    (G + ["--guidance", "nan"], "--guidance nan"),
    (["lora", "info", "{lora_rank}"], "has lora_A of rank 4 but lora_B of rank 3"),
    (TS + ["--lr", "nan"], "--lr nan"),
    (EV + ["--batch-size", "0"], "--batch-size 0"),
    (G + ["--frames", "ten"], "invalid int value"),
    (["lora", "info", "{lora_meta_list}"], "holds a list, but the 'smrabooth' entry must be a JSON object"),
]


def run_smrabooth(argv, env=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "smrabooth.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("argv, message", SUBPROCESS_CASES, ids=[c[0][0] for c in SUBPROCESS_CASES])
def test_bad_input_in_a_real_process(argv, message, world, tmp_path):
    proc = run_smrabooth(fill(argv, world, tmp_path))
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------- generation leaves the pipeline clean
GEN = dict(prompt="a V* dog", frames=5, height=32, width=32, steps=2, seed=3)


def test_a_failing_lora_attach_leaves_the_pipeline_without_adapters(tiny_pipe):
    from smrabooth.errors import SmraboothError
    from smrabooth.sampling import GenerateConfig, generate

    clean = generate(tiny_pipe, GenerateConfig(**GEN), progress=False).frames
    subject = make_random_lora(tiny_pipe.transformer, rank=4, kind="subject", seed=1)
    motion = make_random_lora(tiny_pipe.transformer, rank=4, kind="motion", seed=2)
    motion.tensors = {k: torch.zeros(v.shape[0], v.shape[1] + 1) if k.endswith("lora_A.weight") else v
                      for k, v in motion.tensors.items()}  # made for a wider model
    with pytest.raises(SmraboothError, match="made for another model size"):
        generate(tiny_pipe, GenerateConfig(**GEN), subject, motion, progress=False)
    assert not getattr(tiny_pipe.transformer, "peft_config", None)
    again = generate(tiny_pipe, GenerateConfig(**GEN), progress=False).frames
    assert np.array_equal(again, clean)


def test_a_non_finite_latent_is_an_error_not_a_black_video(tiny_pipe):
    from smrabooth.errors import SmraboothError
    from smrabooth.sampling import GenerateConfig, generate

    huge = make_random_lora(tiny_pipe.transformer, rank=4, kind="subject", scale=1e18)  # finite, overflows in use
    with pytest.raises(SmraboothError, match="hold NaN or Inf"):
        generate(tiny_pipe, GenerateConfig(**GEN), huge, progress=False)
    assert not getattr(tiny_pipe.transformer, "peft_config", None)
    nan = make_random_lora(tiny_pipe.transformer, rank=4, kind="subject")
    nan.tensors["blocks.0.attn1.to_q.lora_B.weight"][0, 0] = math.nan  # the Python API checks what it is given
    with pytest.raises(SmraboothError, match="holds NaN or infinite values"):
        generate(tiny_pipe, GenerateConfig(**GEN), nan, progress=False)


def test_a_lora_of_the_other_kind_warns(world, tmp_path, capsys):
    from smrabooth.lora.files import load_lora, warn_if_other_kind

    weights = load_lora(world["lora"])  # a subject LoRA
    warn_if_other_kind(weights, "subject", "--subject-lora")
    assert capsys.readouterr().err == ""
    warn_if_other_kind(weights, "motion", "--motion-lora")
    assert "warning: --motion-lora is a subject LoRA" in capsys.readouterr().err


def test_lora_files_with_nan_are_never_written(tiny_pipe, tmp_path):
    from smrabooth.errors import SmraboothError
    from smrabooth.lora.files import save_lora

    lora = make_random_lora(tiny_pipe.transformer, rank=4)
    lora.tensors["blocks.1.ffn.net.2.lora_A.weight"][0, 0] = math.inf
    with pytest.raises(SmraboothError, match="refusing to write .*holds NaN or infinite values"):
        save_lora(tmp_path / "x.safetensors", lora)
    assert not list(tmp_path.iterdir())


def test_a_permission_denied_lora_is_not_reported_as_missing(world, monkeypatch):
    from smrabooth.errors import SmraboothError
    from smrabooth.lora.files import load_lora

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == world["lora"] else real(p, mode))
    with pytest.raises(SmraboothError, match="permission denied") as e:
        load_lora(world["lora"], "--subject-lora")
    assert "no such" not in str(e.value).lower()


def test_read_only_output_folder_is_refused_before_sampling(world, tmp_path, monkeypatch, capsys):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) and mode & os.W_OK
                        else real(p, mode))
    assert main(fill(G, world, tmp_path)) == 2
    assert "is not writable" in capsys.readouterr().err


# ---------------------------------------------------------------- the DINOv2 encoder
def test_encoder_folder_must_be_a_complete_dinov2(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from smrabooth.errors import SmraboothError
    from smrabooth.models.dinov2 import build_tiny_dinov2, load_dinov2

    good = tmp_path / "dino"
    build_tiny_dinov2().save_pretrained(good)
    assert load_dinov2(str(good), local_files_only=True).config.model_type == "dinov2"
    from safetensors.torch import load_file

    weights = load_file(str(good / "model.safetensors"))
    partial = tmp_path / "partial"
    build_tiny_dinov2().save_pretrained(partial)
    save_file({k: v for k, v in weights.items() if "layer.1." not in k}, str(partial / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(SmraboothError, match="not a complete DINOv2: .* missing weights"):
        load_dinov2(str(partial), local_files_only=True)
    extra = tmp_path / "extra"
    build_tiny_dinov2().save_pretrained(extra)
    save_file({**weights, "head.weight": torch.zeros(2, 2)}, str(extra / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SmraboothError, match="unexpected weights"):
        load_dinov2(str(extra), local_files_only=True)
    clip = tmp_path / "clip"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=28, patch_size=14)).save_pretrained(clip)
    with pytest.raises(SmraboothError, match="is a clip_vision_model model, not a DINOv2"):
        load_dinov2(str(clip), local_files_only=True)


# ---------------------------------------------------------------- offline means offline
NO_NETWORK = """
import json, socket, sys, time
attempts = []
def refuse(address):
    attempts.append(str(address))
    raise OSError("no network in this test")
socket.socket.connect = lambda self, address: refuse(address)
socket.socket.connect_ex = lambda self, address: refuse(address)
socket.create_connection = lambda address, *a, **k: refuse(address)
from smrabooth.cli import main
start, codes = time.time(), []
for argv in json.loads(sys.argv[1]):
    codes.append(main(argv))
print(json.dumps({"codes": codes, "attempts": attempts, "seconds": time.time() - start}))
"""


def run_without_network(argvs, tmp_path, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "DIFFUSERS_"))}
    env.update(PYTHONPATH=str(ROOT / "src"), HF_HOME=str(tmp_path / "hf-home"), SMRABOOTH_CACHE=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, json.dumps(argvs)], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_offline_flag_makes_no_connection_attempt(world, tmp_path):
    """Every command that loads a model, given hub ids and --offline: not one socket connection is tried."""
    hub = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    argvs = [
        ["generate", "--model", hub, "--prompt", "a dog", "--out", f"{tmp_path}/v.mp4", "--offline"],
        ["train-subject", "--model", world["model"], "--data", world["subject"], "--out", f"{tmp_path}/run",
         "--steps", "1", "--resolution", "32", "--encoder", "facebook/dinov2-giant", "--offline", "--quiet"],
        ["train-motion", "--model", world["model"], "--data", world["motion"], "--out", f"{tmp_path}/run2",
         "--frames", "9", "--height", "32", "--width", "32", "--window", "2", "--window-stride", "1",
         "--drop-frames", "1", "--offline", "--quiet"],
        ["prepare-subject", world["image"], "--name", "dog", "--out", f"{tmp_path}/ps", "--offline"],
        ["prepare-motion", world["video"], "--name", "m", "--captioner", "Qwen/Qwen2-VL-2B-Instruct",
         "--out", f"{tmp_path}/pm", "--offline"],
        ["evaluate", "--videos", world["video"], "--out", f"{tmp_path}/ev", "--metrics",
         "subject_consistency,temporal_consistency", "--offline"],
    ]
    result, err = run_without_network(argvs, tmp_path)
    assert result["attempts"] == [], err[-3000:]
    assert result["codes"] == [2] * len(argvs), err[-3000:]
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(errors) == len(argvs), err[-3000:]
    # each got as far as loading its hub model (not stopped by some earlier check)
    for command, piece in zip(["generate", "train-subject", "train-motion", "prepare-subject", "prepare-motion",
                               "evaluate"], ["Wan-AI", "dinov2-giant", "Tartan", "", "Qwen", "no metric could run"]):
        line = next(ln for ln in errors if ln.startswith(f"smrabooth {command}:"))
        assert piece in line, line


def test_without_network_a_hub_id_fails_at_once(tmp_path):
    """No flag, no network: one probe, then offline mode; a model not downloaded is a one-line error in seconds
    (the hub client's retries took minutes)."""
    argv = ["generate", "--model", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "--prompt", "a dog", "--out",
            f"{tmp_path}/v.mp4"]
    result, err = run_without_network([argv], tmp_path)
    assert result["codes"] == [2] and len(result["attempts"]) == 1, err[-3000:]
    assert "the model hub is not reachable" in err
    assert result["seconds"] < 30
    lines = [ln for ln in err.strip().splitlines() if "warning" not in ln.lower()]
    assert lines[-1].startswith("smrabooth generate: error: could not load the Wan model") and len(lines) == 1, err
    assert "not in the local cache" in lines[-1] and "Traceback" not in err


# ---------------------------------------------------------------- run folders
TRAIN = ["train-subject", "--no-sura", "--resolution", "32", "--rank", "4", "--alpha", "4", "--checkpoint-every", "1",
         "--quiet", "--dtype", "fp32", "--no-gradient-checkpointing"]


def train_argv(world, run, *extra):
    return [*TRAIN, "--model", world["model"], "--data", world["subject"], "--out", str(run),
            "--cache-dir", str(run.parent / "cache"), *extra]


def test_resume_refuses_changed_settings_and_falls_back_to_an_intact_checkpoint(world, tmp_path, capsys):
    from smrabooth.train.common import list_checkpoints, read_log

    run = tmp_path / "run"
    assert main(train_argv(world, run, "--steps", "2")) == 0
    capsys.readouterr()
    # a setting other than --steps: refused, naming it (rank 4 saved; the default would be 32)
    assert main(train_argv(world, run, "--steps", "3", "--resume", "--rank", "8")) == 2
    err = capsys.readouterr().err
    assert "rank 4 (asked: 8)" in err and "only --steps may change" in err
    assert main(train_argv(world, run, "--resume", "--steps", "3", "--lr", "0.5")) == 2
    assert "lr 0.0001 (asked: 0.5)" in capsys.readouterr().err
    assert main(train_argv(world, run, "--resume", "--steps", "1")) == 2  # fewer steps than done
    assert "is already at step 2; pass --steps 2 or more" in capsys.readouterr().err
    # same flags (rank 4 given again) or none: continues with the saved settings
    assert main(train_argv(world, run, "--resume", "--steps", "3")) == 0
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2, 3]
    capsys.readouterr()

    # the newest checkpoint damaged, the log's last line cut short, a temporary folder left by a killed call
    newest = list_checkpoints(run)[-1][1]
    assert newest.name == "step-3"
    (newest / "lora.safetensors").write_bytes((newest / "lora.safetensors").read_bytes()[:100])
    log = (run / "log.jsonl").read_text()
    (run / "log.jsonl").write_text(log[:-20])
    (run / "checkpoints" / ".step-9.tmp").mkdir()
    assert main(train_argv(world, run, "--resume", "--steps", "4")) == 0
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is damaged" in err and "Traceback" not in err
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2, 3, 4]  # resumed from step 2
    assert not (run / "checkpoints" / ".step-9.tmp").exists()
    assert not (run / ".lock").exists()

    # a run's config.yaml holding a value of the wrong type: one line
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("rank: 4", "rank: ten"))
    assert main(train_argv(world, run, "--resume", "--steps", "5")) == 2
    err = capsys.readouterr().err.strip()
    assert "rank: 'ten' is not a whole number" in err and len(err.splitlines()) == 1


def test_a_live_run_folder_is_locked_against_a_second_trainer(world, tmp_path):
    """Two real processes: the second trainer is refused whatever its flags; once the first is killed, its
    lock is stale and taken over."""
    import signal

    from smrabooth.train import lock

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    first = subprocess.Popen([sys.executable, "-m", "smrabooth.cli", *train_argv(world, run, "--steps", "100000",
                                                                                 "--checkpoint-every", "100000")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (run / lock.LOCK_NAME).exists():
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline
            time.sleep(0.5)
        holder = lock.read_lock(run)
        assert holder["pid"] == first.pid
        for flags in (["--overwrite"], ["--resume"], []):
            second = run_smrabooth(train_argv(world, run, "--steps", "2", *flags))
            err = second.stderr.strip()
            assert second.returncode == 2 and len(err.splitlines()) == 1, err
            assert f"is in use by a running training (pid {first.pid}" in err, err
        assert first.poll() is None and (run / "config.yaml").exists()  # the first run is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock.read_lock(run)["pid"] == first.pid  # left behind by the killed process: stale
    lock.check_unlocked(run)
    lock.acquire(run)
    assert lock.read_lock(run)["pid"] == os.getpid()
    lock.release(run)
    assert not (run / lock.LOCK_NAME).exists()


# ---------------------------------------------------------------- NaN and full disks during training
def subject_config(world, tmp_path, **kw):
    from smrabooth.train.subject import SubjectTrainConfig

    base = {"model": "tiny", "data": world["subject"], "out": str(tmp_path / "run"), "steps": 4, "rank": 4,
            "alpha": 4.0, "lr": 1e-3, "resolution": 32, "use_sura": False, "gradient_checkpointing": False,
            "checkpoint_every": 2, "save_dtype": "fp32", "cache_dir": str(tmp_path / "cache"), "batch_size": 1}
    return SubjectTrainConfig(**{**base, **kw})


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(world, tmp_path, tiny_pipe, monkeypatch):
    from smrabooth.errors import SmraboothError
    from smrabooth.train import subject as subject_module
    from smrabooth.train.common import list_checkpoints

    real, calls = subject_module.masked_flow_loss, []

    def poisoned(*a):
        calls.append(1)
        loss = real(*a)
        return loss * math.nan if len(calls) == 3 else loss

    monkeypatch.setattr(subject_module, "masked_flow_loss", poisoned)
    with pytest.raises(SmraboothError, match=r"step 3: flow = nan.*training stopped.*step 2, is kept"):
        subject_module.train_subject(subject_config(world, tmp_path), tiny_pipe, model_id="tiny", progress=False)
    run = tmp_path / "run"
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert not (run / subject_module.FINAL_NAME).exists()


@pytest.mark.parametrize("errno, text", [(28, "No space left on device"), (30, "Read-only file system")])
def test_a_full_or_read_only_disk_mid_run_is_one_error_and_no_half_written_checkpoint(world, tmp_path, tiny_pipe,
                                                                                      monkeypatch, errno, text):
    import safetensors.torch

    from smrabooth.errors import SmraboothError
    from smrabooth.train.common import list_checkpoints
    from smrabooth.train.subject import train_subject

    real = safetensors.torch.save_file

    def failing(tensors, path, *a, **k):
        if "step-4" in str(path):
            raise OSError(errno, text)
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(SmraboothError, match=rf"could not write the checkpoint of step 4 .*{text}.*step 2, is kept"):
        train_subject(subject_config(world, tmp_path), tiny_pipe, model_id="tiny", progress=False)
    run = tmp_path / "run"
    assert [s for s, _ in list_checkpoints(run)] == [2]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-2"]


def test_captions_without_the_token_warn_at_training_time(world, tmp_path, tiny_pipe, capsys):
    import shutil

    from smrabooth.train.subject import train_subject

    data = tmp_path / "subject"
    shutil.copytree(world["subject"], data)
    (data / "metadata.csv").write_text("file_name,text\n00.png,a picture of a ball\n")
    train_subject(subject_config(world, tmp_path, data=str(data), steps=1), tiny_pipe, model_id="tiny", progress=False)
    assert "1 of 1 captions have no subject token (V* or sks)" in capsys.readouterr().err
