"""Stage 1: the subject LoRA, trained with the masked flow-matching loss plus SuRA (docs/method.md).

    L = w(t) * L_region + lambda * L_SuRA       w(t): schedules.timestep_weights (1 under `paper`)
    L_region = sum(M * (u - v)^2) / sum(M)      flow-matching error inside the subject mask
    L_SuRA   = - mean_n cos(y*[n], h_phi(h_l[n]))  (align/sura.py)

per image; a step of `batch_size` images averages them (train/distributed.py).

Each image is a one-frame video. Prompt embeddings, VAE latents and DINOv2 features are computed
once and cached; the text encoder is freed before training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..align.sura import build_projector, sura_loss, tokens_on_grid
from ..backbones import backbone_of
from ..backbones.wan22 import EXPERT_CHOICES, expert_file_name
from ..config import setting
from ..data.cache import cache_key, cached, default_cache_dir, file_digest, model_digest
from ..data.subject import MASK_RULES, SubjectExample, load_image_and_mask, mask_to_latent_grid
from ..data.tokens import SUBJECT_TOKENS, folder_token
from ..data.transforms import RESIZE_FILTERS
from ..errors import SmraboothError
from ..lora.targets import parse_layer_types
from ..models.dinov2 import ENCODER_RESIZES
from ..models.wan import check_model_source
from ..recipes import DEFAULT_RECIPE, RECIPES, get_recipe
from ..run_folder import abandons_staging
from ..schedules import TIMESTEP_ROUNDINGS, TIMESTEP_WEIGHTS, training_table
from ..validation import check_choice, check_multiple, check_number, check_train_settings
from .common import (
    LORA_DTYPES,
    LoopSettings,
    add_lora_adapter,
    autocast_enabled,
    check_inputs,
    compile_blocks,
    data_files,
    export_lora,
    make_validator,
    sample_timesteps,
    seeded,
    train_loop,
    warn_untokened_captions,
)
from .denoisers import TrainedDenoisers
from .memory import MEMORY_HELP, MEMORY_MODES, apply_memory_policy
from .session import training_session

FINAL_NAME = "subject_lora.safetensors"
ADAPTER = "subject"
_R = RECIPES[DEFAULT_RECIPE].subject
EXPERT_HELP = ("Wan2.2 A14B: the expert(s) the LoRA is trained in, each on its own side of the boundary: high, low "
               "or both (default: both; one file per expert); models with one transformer take none")


@dataclass
class SubjectTrainConfig:
    """Every setting of a subject run (written to config.yaml; `train-subject` has a flag for each). The
    method's defaults come from the recipe (recipes.SubjectRecipe, docs/method.md stage 1): build a config
    for another recipe with `from_recipe`. Help of the settings both trainers share: TRAIN_SETTING_HELP."""

    model: str = setting("", cli=False)  # --model comes with the other model flags (cli/common.py)
    data: str = setting("", "subject folder: images/, masks/, metadata.csv (file_name,text; or the authors' "
                        "video,mask,prompt); or a plain image folder with --name")
    out: str = ""
    name: str | None = setting(None, "subject name for a plain image folder (captions: 'a picture of V* NAME')")
    recipe: str = setting(DEFAULT_RECIPE, choices=tuple(RECIPES))
    expert: str | None = setting(None, EXPERT_HELP, choices=EXPERT_CHOICES)
    steps: int = _R.steps
    rank: int = _R.rank
    alpha: float = _R.alpha
    lr: float = _R.lr
    resolution: int = setting(_R.resolution, "square training size (multiple of 16)")
    still_frames: int = setting(1, "frames of the still video each photo is trained as: 1 = one frame (the paper, "
                                "the authors' code); 4k+1 = the photo repeated, so the LoRA learns the subject in "
                                "a video's later latent frames too (a deviation; measured on SMRA-Sprites in "
                                "benchmarks/history/sprites-diagnosis.md)")
    encoder: str = setting(_R.encoder, "DINOv2 hub id or local folder (SuRA's image encoder)")
    sura_weight: float = setting(_R.sura_weight, "lambda of L_SuRA")
    sura_layer: int = setting(_R.sura_layer, "0-based block whose output SuRA aligns")
    use_sura: bool = setting(True, "SuRA on (--no-sura: the paper's 'w/o SuRA' ablation)", flag="sura")
    use_mask: bool = setting(True, "the flow loss inside the subject mask (--no-mask: on the whole image, no masks "
                             "needed)", flag="mask")
    projector_width: int = setting(_R.projector_width, "hidden width of SuRA's MLP projector (REPA's; smaller for "
                                   "small models)")
    layer_types: tuple[str, ...] = _R.layer_types
    shift: float = _R.shift
    timestep_weight: str = setting(_R.timestep_weight, choices=TIMESTEP_WEIGHTS)
    warmup_steps: int = _R.warmup_steps
    warmup_factor: float = _R.warmup_factor
    lora_dtype: str = setting(_R.lora_dtype, choices=tuple(LORA_DTYPES))
    vae_dtype: str = setting(_R.vae_dtype, cli=False)  # --vae-dtype comes with the model flags (cli/common.py)
    timestep_rounding: str = setting(_R.timestep_rounding, choices=TIMESTEP_ROUNDINGS)
    resize_filter: str = setting(_R.resize_filter, choices=RESIZE_FILTERS)
    mask_rule: str = setting(_R.mask_rule, "pixel mask to latent grid: area = the covered fraction of each cell; "
                             "bilinear = the mask resized bilinearly to the training size, then bilinearly to the "
                             "latent grid, every cell above 0 is subject (the authors')", choices=MASK_RULES)
    train_projector: bool = setting(_R.train_projector, "train SuRA's projector (off: it stays as initialised, as "
                                    "in the authors' code)")
    encoder_resize: str = setting(_R.encoder_resize, "DINOv2's input resize: antialias = bicubic with antialiasing, "
                                  "clamped; bicubic = normalised, then plain bicubic (the authors')",
                                  choices=ENCODER_RESIZES)
    seed: int = 0
    memory: str = setting("auto", MEMORY_HELP, choices=MEMORY_MODES)
    gradient_checkpointing: bool = True
    compile: bool = False  # torch.compile each transformer block (regional compilation)
    cuda_graphs: bool = setting(False, "--compile with CUDA graphs: about 2x faster steps on a GPU (the step is "
                                "launch-bound)")
    mixed_precision: str = setting("auto", choices=("auto", "bf16", "no"))  # auto: bf16 autocast on CUDA only
    weight_decay: float = _R.weight_decay
    max_grad_norm: float = _R.max_grad_norm
    checkpoint_every: int = 100
    batch_size: int = _R.batch_size  # samples per process per optimizer step (computed one after the other)
    gradient_accumulation: int = 1  # times batch_size per process per step; effective batch: train/distributed.py
    validate_every: int = 0
    validation_prompt: str | None = None
    validation_frames: int = setting(17, "frames of a validation video")
    validation_steps: int = 30
    save_dtype: str = setting("bf16", choices=("bf16", "fp32", "fp16"))
    cache_dir: str | None = None  # None: ~/.cache/smrabooth (SMRABOOTH_CACHE)
    extra: dict = field(default_factory=dict)  # no flag: a dict (set from --config)

    @classmethod
    def from_recipe(cls, recipe: str = DEFAULT_RECIPE, **settings) -> SubjectTrainConfig:
        """The recipe's subject stage as the defaults, `settings` on top."""
        return cls(recipe=recipe, **{**dataclasses.asdict(get_recipe(recipe).subject), **settings})

    def validate(self) -> SubjectTrainConfig:
        get_recipe(self.recipe)
        check_train_settings(self)
        check_number("--warmup-steps", self.warmup_steps, 0, 10**7, integer=True)
        check_number("--warmup-factor", self.warmup_factor, 0, 1, low_open=True)
        check_choice("--timestep-weight", self.timestep_weight, TIMESTEP_WEIGHTS)
        check_choice("--mask-rule", self.mask_rule, MASK_RULES)
        if self.expert is not None:
            check_choice("--expert", self.expert, EXPERT_CHOICES)
        check_choice("--encoder-resize", self.encoder_resize, ENCODER_RESIZES)
        check_multiple("--resolution", self.resolution, 16, 16, 2048)
        check_number("--still-frames", self.still_frames, 1, 1001, integer=True)
        if (self.still_frames - 1) % 4:
            raise SmraboothError(f"--still-frames {self.still_frames} is not 4k+1 (the VAE packs 4 frames per "
                                 "latent): use 1, 5, 9, 13 or 17")
        check_number("--sura-weight", self.sura_weight, 0, 1000)
        check_number("--sura-layer", self.sura_layer, 0, 1000, integer=True)
        check_number("--projector-width", self.projector_width, 1, 65536, integer=True)
        check_number("validation_frames", self.validation_frames, 1, 1001, integer=True)
        if self.use_sura and self.encoder:
            check_model_source(self.encoder, "--encoder", folder_check=None)
        if self.validate_every and not self.validation_prompt:
            raise SmraboothError("--validate-every needs --validation-prompt")
        if self.cuda_graphs and self.validate_every:
            raise SmraboothError("--cuda-graphs with --validate-every is not supported (validation videos would "
                                 "record a second set of graphs; it was never measured): drop one of them")
        self.compile = self.compile or self.cuda_graphs
        self.layer_types = parse_layer_types(self.layer_types)
        return self


def read_subject_items(cfg: SubjectTrainConfig):
    """(image_path, mask_path or None, caption) for each training image."""
    from ..data.folders import read_subject_folder

    items = read_subject_folder(cfg.data, name=cfg.name, require_masks=cfg.use_mask, use_masks=cfg.use_mask)
    return [(it.image_path, it.mask_path if cfg.use_mask else None, it.text) for it in items]


def precompute_examples(cfg, pipe, get_encoder: Callable, items, model_id: str, cache_dir,
                        progress: bool = True) -> list[SubjectExample]:
    """Latents, latent masks, DINOv2 tokens and caption embeddings, cached by content hash.
    `get_encoder()` is called only on a cache miss: a returning run never loads DINOv2."""
    from tqdm.auto import tqdm

    res = cfg.resolution
    latent_hw = (res // pipe.vae_scale_factor_spatial, res // pipe.vae_scale_factor_spatial)
    p = pipe.transformer.config.patch_size
    grid = (latent_hw[0] // p[1], latent_hw[1] // p[2])
    examples = []
    # by the files of the VAE and of DINOv2, not their names: a model replaced in place misses the cache
    vae = model_digest(model_id, ("vae",), cache_dir)
    encoder = model_digest(cfg.encoder, (), cache_dir) if cfg.use_sura else None
    for image_path, mask_path, text in tqdm(items, desc="caching latents and features", leave=False, disable=not progress):
        # settings away from the first defaults enter the key (the caches of those stay valid)
        rules = {"mask_rule": (cfg.mask_rule, "rgb") if cfg.mask_rule != "area" else None,
                 "resize_filter": cfg.resize_filter if cfg.resize_filter != "bicubic" else None,
                 "encoder_resize": cfg.encoder_resize if cfg.use_sura and cfg.encoder_resize != "antialias" else None,
                 "still_frames": cfg.still_frames if cfg.still_frames != 1 else None}
        key = cache_key(kind="subject-image", model=vae, res=res, image=file_digest(image_path),
                        mask=file_digest(mask_path) if mask_path else None,
                        encoder=encoder, vae_dtype=str(pipe.vae.dtype),
                        **{k: v for k, v in rules.items() if v is not None})

        def compute(image_path=image_path, mask_path=mask_path):
            image, mask = load_image_and_mask(image_path, mask_path, res, cfg.mask_rule, cfg.resize_filter)
            backbone = backbone_of(pipe)
            out = {"latent": backbone.encode_image(pipe, image) if cfg.still_frames == 1 else
                   backbone.encode_video(pipe, image[None].expand(cfg.still_frames, *image.shape))}
            out["mask"] = (mask_to_latent_grid(mask, latent_hw, cfg.mask_rule) if mask is not None
                           else torch.ones(1, 1, *latent_hw))
            if cfg.use_sura:
                from ..models.dinov2 import dinov2_patch_features

                encoder = get_encoder()
                feats = dinov2_patch_features(encoder, image[None].to(encoder.device), grid, cfg.encoder_resize)
                out["tokens"] = tokens_on_grid(feats, grid)[0]
            return out

        t = cached(cache_dir, key, compute)
        examples.append(SubjectExample(t["latent"], t["mask"], t.get("tokens"), text))
    return examples


def masked_flow_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(M * (u - v)^2) / sum(M), M broadcast over channels: the mean squared error inside the mask."""
    mask = mask.expand_as(pred)
    return (mask * (pred.float() - target.float()) ** 2).sum() / mask.sum().clamp_min(1e-8)


@abandons_staging
def train_subject(cfg: SubjectTrainConfig, pipe, encoder=None, model_id: str | None = None, resume: bool = False,
                  overwrite: bool = False, progress: bool = True, explicit: set[str] | None = None) -> Path:
    """Train a subject LoRA into `cfg.out`; returns the path of the final LoRA file.

    With `resume`, `explicit` names the settings the user asked for (the CLI's flags): any of them that differs
    from the run's saved settings is an error (None: every setting of `cfg` is compared; only `steps` may change).

    `encoder`: the DINOv2 model, or a function that loads it. A function is called only if some image's
    features are not cached yet, and its model is dropped after caching. `pipe` and an `encoder` model
    are returned as they were given, also on an error (train.borrow): while training, the text encoder
    and DINOv2 wait on the CPU and the transformer carries the adapter "subject".
    """
    backbone = backbone_of(pipe)

    def check(cfg):
        device = backbone.generation_device(pipe)
        if cfg.cuda_graphs and device.type != "cuda":
            raise SmraboothError(f"--cuda-graphs needs a CUDA device (the model is on {device.type})")
        backbone.check_train_config("subject", cfg)
        return apply_memory_policy(cfg, "subject", next(iter(backbone.denoisers(pipe).values())), device, explicit,
                                   vae=pipe.vae)

    with training_session(cfg, pipe, final_names(backbone, cfg)[0], resume, overwrite, explicit,
                          models=[encoder] if isinstance(encoder, torch.nn.Module) else [], check=check) as run:
        return _train_subject(run, pipe, backbone, encoder, model_id, progress)


def final_names(backbone, cfg) -> tuple[str, ...]:
    """The LoRA files of a finished run: subject_lora.safetensors, or one per trained Wan2.2 A14B expert."""
    return backbone.final_names("subject", cfg)


def export_files(trainees: TrainedDenoisers, run_dir: Path, name: str, adapter: str, rank: int, alpha: float,
                 kind: str, dtype, extra_info: dict) -> list[Path]:
    """One LoRA file per trained denoiser (with two experts: name_high/name_low, each recording its expert)."""
    paths = []
    for expert, module in trainees.experts.items():
        two = len(trainees.backbone.experts(trainees.pipe)) > 1
        info = {**{k: v for k, v in extra_info.items() if v is not None},  # e.g. no token: captions without one
                **({"expert": expert} if two else {})}
        path = run_dir / (expert_file_name(name, expert) if two else name)
        paths.append(export_lora(module, adapter, path, rank, alpha, kind, dtype=dtype, extra_info=info))
    return paths


def _train_subject(run, pipe, backbone, encoder, model_id: str | None, progress: bool) -> Path:
    cfg, run_dir, parallel, times = run.cfg, run.run_dir, run.parallel, run.times
    trainees = TrainedDenoisers.select(backbone, pipe, cfg.expert)
    device = next(trainees.first.parameters()).device
    if cfg.use_sura and encoder is None:
        raise SmraboothError("SuRA needs a DINOv2 encoder (or pass --no-sura)")

    model_id = model_id or cfg.model
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    items = read_subject_items(cfg)
    check_inputs(run_dir, data_files(cfg.data, items), run.resume, parallel)
    warn_untokened_captions([t for _, _, t in items], SUBJECT_TOKENS, "subject")
    texts = [t for _, _, t in items] + ([cfg.validation_prompt, ""] if cfg.validate_every else [])
    embeds = backbone.encode_captions(pipe, texts, model_id, cache_dir)
    times.mark("captions")
    loaded = {}

    def get_encoder():
        if "encoder" not in loaded:
            loaded["encoder"] = encoder if isinstance(encoder, torch.nn.Module) else encoder()
        return loaded["encoder"]

    examples = precompute_examples(cfg, pipe, get_encoder, items, model_id, cache_dir, progress=progress)
    times.mark("precompute")
    if pipe.text_encoder is not None:
        pipe.text_encoder.to("cpu")  # the largest model we no longer need (umT5-XXL: 11 GB in bf16)
    if isinstance(encoder, torch.nn.Module):
        encoder.to("cpu")  # the caller's model: back on its device at the end
    loaded.clear()  # a model we loaded ourselves is freed, not copied
    if not cfg.validate_every:
        pipe.vae.to("cpu")
        trainees.park_idle()  # an A14B expert this run does not train (validation videos need both)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    times.mark("offload")

    params = []
    for module, seed in zip(trainees.experts.values(), trainees.lora_seeds(cfg.seed).values()):
        params += add_lora_adapter(module, ADAPTER, cfg.rank, cfg.alpha, cfg.layer_types, seed=seed,
                                   dtype=LORA_DTYPES[cfg.lora_dtype])
    modules = {}
    hidden = {}
    hooks = []
    if cfg.use_sura:
        blocks = [backbone.sura_module(module, cfg.sura_layer) for module in trainees.experts.values()]
        with seeded(cfg.seed + 1):  # one projector, whichever expert runs (it is discarded after training)
            projector = build_projector(blocks[0][1], examples[0].tokens.shape[-1], cfg.projector_width).to(device)
        modules["projector"] = projector
        if cfg.train_projector:
            params += list(projector.parameters())
        else:  # the authors' code: the projector is not in the optimizer, it stays as initialised
            projector.requires_grad_(False)
        hooks = [block.register_forward_hook(lambda m, i, o: hidden.__setitem__("h", o)) for block, _ in blocks]
    times.mark("lora")
    for module in trainees.experts.values():
        if cfg.gradient_checkpointing:
            module.enable_gradient_checkpointing()
        if cfg.compile:
            compile_blocks(module, cfg.cuda_graphs)
        module.train()
    transformer = trainees.module  # what checkpoints hold the LoRA of

    use_autocast = autocast_enabled(cfg.mixed_precision, device)
    sigmas, weights = trainees.sigma_table(*training_table(cfg.shift, cfg.timestep_weight, cfg.timestep_rounding))
    text_on_device = {t: e.to(device, trainees.first.dtype) for t, e in embeds.items()}
    on_device = [SubjectExample(e.latent.to(device), e.mask.to(device),
                                None if e.tokens is None else e.tokens.to(device), e.text) for e in examples]

    def draw(gen: torch.Generator):
        """One sample's draws (image, sigma, weight, noise), in the order of a one-sample step."""
        ex = on_device[int(torch.randint(len(on_device), (1,), generator=gen))]
        sigma, weight = (v.to(device) for v in sample_timesteps(sigmas, weights, 1, gen))
        return ex, sigma, weight, torch.randn(ex.latent.shape, generator=gen).to(device)

    def sample_losses(denoiser, samples) -> dict[str, torch.Tensor]:
        """Each term per sample (B,), for samples `denoiser` takes, in one forward."""
        exs = [ex for ex, *_ in samples]
        sigma, weight = torch.cat([s[1] for s in samples]), torch.cat([s[2] for s in samples])
        z0, noise = torch.stack([ex.latent for ex in exs]), torch.stack([s[3] for s in samples])
        per_item = sigma.view(-1, *[1] * (z0.ndim - 1))
        z_t = backbone.add_noise(z0, noise, per_item)
        target = backbone.training_target(z0, noise, per_item)
        text = torch.cat([text_on_device[ex.text] for ex in exs])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            u = backbone.predict(pipe, denoiser, z_t, sigma, text)
            # logged as it enters the loss: w(t) times the mean squared error inside each image's mask
            terms = {"flow": weight * torch.stack([masked_flow_loss(u[i:i + 1], target[i:i + 1], ex.mask[None])
                                                   for i, ex in enumerate(exs)])}
            if cfg.use_sura:  # never time-weighted; --still-frames: every latent frame aligned to the photo
                hidden_tokens = hidden.pop("h")
                frames = hidden_tokens.shape[1] // exs[0].tokens.shape[0]
                terms["sura"] = torch.stack([sura_loss(ex.tokens[None].repeat(1, frames, 1), hidden_tokens[i:i + 1],
                                                       modules["projector"]) for i, ex in enumerate(exs)])
        return terms

    def compute_losses(step: int, gens: list[torch.Generator]) -> dict[str, torch.Tensor]:
        """The mean losses of one sample per generator: the samples of each denoiser (an A14B expert) in one
        forward, so a batch costs about one launch-bound step (train_loop's `batched`)."""
        samples = [draw(gen) for gen in gens]
        groups: dict[torch.nn.Module, list] = {}
        for sample in samples:
            groups.setdefault(trainees.at(sample[1]), []).append(sample)
        per_sample: dict[str, list] = {}
        for denoiser, members in groups.items():
            for name, values in sample_losses(denoiser, members).items():
                per_sample.setdefault(name, []).append(values)
        losses = {name: torch.cat(values).mean() for name, values in per_sample.items()}
        losses["loss"] = losses["flow"] + cfg.sura_weight * losses["sura"] if cfg.use_sura else losses["flow"]
        return losses

    validate = None
    if cfg.validate_every:
        validate = make_validator(pipe, run_dir, embeds[cfg.validation_prompt], embeds[""], frames=cfg.validation_frames,
                                  height=cfg.resolution, width=cfg.resolution, steps=cfg.validation_steps,
                                  seed=cfg.seed, shift=cfg.shift)

    generator = torch.Generator().manual_seed(cfg.seed)
    settings = LoopSettings(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            max_grad_norm=cfg.max_grad_norm, checkpoint_every=cfg.checkpoint_every,
                            validate_every=cfg.validate_every, progress=progress, warmup_steps=cfg.warmup_steps,
                            warmup_factor=cfg.warmup_factor)
    times.mark("setup")
    try:
        train_loop(run_dir, settings, transformer, ADAPTER, params, modules, compute_losses, generator,
                   resume=run.resume, validate=validate, parallel=parallel, batched=True)
        times.mark("loop")
    finally:
        for hook in hooks:
            hook.remove()  # the hook would keep the last hidden state alive in a reused pipeline
        hidden.clear()
    from ..models.wan import parse_dtype

    names = final_names(backbone, cfg)
    token = folder_token([t for _, _, t in items], SUBJECT_TOKENS)

    def write():
        export_files(trainees, run_dir, FINAL_NAME, ADAPTER, cfg.rank, cfg.alpha, "subject", parse_dtype(cfg.save_dtype),
                     {"steps": cfg.steps, "sura": cfg.use_sura, "recipe": cfg.recipe, "token": token})
        if "projector" in modules:
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in modules["projector"].state_dict().items()},
                      str(run_dir / "projector.safetensors"))

    return run.finish(names[0], write)
