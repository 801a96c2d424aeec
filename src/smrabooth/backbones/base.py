"""The backbone interface: what SMRABooth needs from a text-to-video model family.

A `Backbone` is a stateless description of one family of diffusers pipelines. Everything above this layer
(trainers, sampling, LoRA files, validation, the CLI) asks it, and never tests a backbone's name:

  loading      `matches` (a folder's model_index.json), `check_folder`, `load` (hub id or folder; a folder
               never touches the network), `build_tiny` (the same classes, random weights, for tests)
  denoisers    `denoisers(pipe)`: the networks that predict, by expert name: {"main": transformer} for one
               network, {"high": transformer, "low": transformer_2} for Wan2.2 A14B's two experts; `expert_at`
               says which one denoises a timestep (the stock pipeline's boundary), `expert_sigmas` which noise
               levels an expert is trained on
  noise        `add_noise`, `training_target`, `one_step_z0`: how noise is added, what the model predicts
               (velocity for Wan, epsilon for ZeroScope) and the one-step clean estimate MoRA decodes
  forward      `predict(denoiser, z_t, t, text)`: one call of a denoiser as the stock pipeline calls it
               (Wan2.2 TI2V-5B takes one timestep per token)
  latents      `encode_image`, `encode_video`, `decode_window` (the differentiable window decode of MoRA)
  captions     `encode_captions` (cached text embeddings)
  SuRA         `sura_module(denoiser, where)`: the module whose output SuRA aligns, and its width
  LoRA         `layer_types` (short name -> module suffixes), `read_lora`, `describe_lora`, `lora_file_is_mine`
  sampler      `generate_config_class`, `generate_defaults`, `check_generate`, `generate(pipe, config, subject,
               motion, ...)`, `sample_video`
  training     `train_config_class(kind)`, `trainer(kind)`, `final_names(kind, cfg)`

A new backbone is one module in this package with a `Backbone` subclass, registered in `BACKBONES`
(backbones/__init__.py), and its tests (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SmraboothError

EXPERTS = ("high", "low")  # Wan2.2 A14B's two experts: high noise (`transformer`), low noise (`transformer_2`)
MAIN = "main"  # the one denoiser of a backbone without experts


def read_model_index(path) -> dict | None:
    """A folder's model_index.json, or None when it has none; a broken one is one clear error (readers.py)."""
    from ..readers import read_json

    index = Path(path) / "model_index.json"
    return read_json(index, dict, "model_index.json") if index.is_file() else None


def listed(index: dict, component: str) -> bool:
    """Whether model_index.json lists `component` (an absent optional one is [null, null])."""
    entry = index.get(component)
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None


def check_components(path, index: dict, components, hint: str) -> None:
    for sub in components:
        if listed(index, sub) and not (Path(path) / sub).is_dir():
            raise SmraboothError(f"{path} is missing its {sub}/ folder: the download is incomplete ({hint})")


class Backbone:
    """One model family. Subclasses set the attributes and implement the methods (see the module docstring)."""

    name: str = ""  # the --backbone value
    title: str = ""  # as messages name it
    family: str = ""  # backbones of one family share LoRA files and trainers
    family_title: str = ""  # the family as messages name it
    pipeline_class: str = ""  # diffusers pipeline class in model_index.json
    example: str = ""  # a hub id, for messages
    components: tuple[str, ...] = ()  # the pipeline's models a trainer may change (train.borrow)

    def __repr__(self) -> str:
        return f"<backbone {self.name}>"

    # ------------------------------------------------------------ loading
    def matches(self, index: dict) -> bool:
        """Whether a model_index.json describes this backbone's pipeline."""
        raise NotImplementedError

    def matches_hub_id(self, model: str) -> bool:
        return False

    def check_folder(self, path) -> None:
        raise NotImplementedError

    def load(self, model, dtype="auto", vae_dtype="fp32", device=None, local_files_only=None,
             text_encoder_device=None):
        raise NotImplementedError

    def build_tiny(self, seed: int = 0):
        raise NotImplementedError

    # ------------------------------------------------------------ denoisers
    def denoisers(self, pipe) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def experts(self, pipe=None) -> tuple[str, ...]:
        """The names of the denoisers (MAIN, or EXPERTS)."""
        return (MAIN,)

    def expert_at(self, pipe, timestep) -> str:
        return MAIN

    def check_expert(self, expert: str | None, flag: str = "--expert") -> tuple[str, ...]:
        """The experts an `--expert` value selects here (None: all of them)."""
        if expert is None:
            return self.experts()
        raise SmraboothError(f"{flag} {expert}: {self.title} has one denoiser; --expert is for Wan2.2 A14B's two "
                             f"experts (high, low, both)")

    def generation_device(self, pipe) -> torch.device:
        module = next(iter(self.denoisers(pipe).values()))
        return next(module.parameters()).device

    # ------------------------------------------------------------ LoRA
    @property
    def layer_types(self) -> dict[str, tuple[str, ...]]:
        """LoRA layer type (q, k, v, o, ffn.0, ffn.2) -> module-path suffixes inside a block."""
        raise NotImplementedError

    def read_lora(self, path, flag: str = "LoRA file"):
        raise NotImplementedError

    def describe_lora(self, path) -> str:
        raise NotImplementedError

    def lora_file_is_mine(self, path) -> bool:
        """Whether a LoRA file was made for this backbone family (by its keys)."""
        raise NotImplementedError

    # ------------------------------------------------------------ generation
    generate_config_class: type = object
    takes_presets: bool = False  # whether generate_defaults takes a recipe's sampler preset (recipes.py)
    generate_only: tuple[str, ...] = ()  # GenerateConfig fields of other backbones this one refuses

    def generate_defaults(self, preset: str | None = None):
        """The `generate_config_class` instance a generation starts from (with a recipe's sampler `preset` where
        `takes_presets`); a --config file and the flags go on top (cli/common.py config_from_args)."""
        raise NotImplementedError

    def check_generate(self, config):
        """What this model adds to the settings' own validate() (e.g. sizes its VAE divides); returns `config`."""
        return config

    def generate(self, pipe, config, subject=None, motion=None, progress=True, on_step=None, lora_paths=None):
        raise NotImplementedError

    def check_lora_files(self, config, loras: dict[str, list], paths: dict[str, list]) -> None:
        """Whether the LoRA files given per kind (subject, motion) fit this model's denoisers, before it loads."""
        for kind, files in loras.items():
            if len(files) > 1:
                raise SmraboothError(f"--{kind}-lora: {len(files)} files, but {self.title} takes one per LoRA")

    # ------------------------------------------------------------ training
    def train_config_class(self, kind: str) -> type:
        raise NotImplementedError

    def trainer(self, kind: str):
        raise NotImplementedError

    def check_train_config(self, kind: str, cfg) -> None:
        """What this model adds to the settings check of a `kind` run (before anything loads or is written)."""

    def final_names(self, kind: str, cfg) -> tuple[str, ...]:
        """The LoRA files a finished run of `kind` holds (the first one marks a finished run)."""
        raise NotImplementedError


__all__ = ["EXPERTS", "MAIN", "Backbone", "check_components", "listed", "read_model_index"]
