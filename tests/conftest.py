import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch a hub

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_pipe():
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe = build_tiny_wan_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    path = tmp_path_factory.mktemp("tiny_wan")
    build_tiny_wan_pipeline().save_pretrained(path)
    return path


def make_random_lora(transformer, rank=4, alpha=8.0, layer_types=None, seed=0, kind=None, scale=0.5):
    """A LoRA with random A and B (non-zero, so it changes the output) for every block."""
    from smrabooth.lora.files import LoraWeights, base_model_info
    from smrabooth.lora.targets import ALL_LAYER_TYPES, LAYER_TYPES

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i, block in enumerate(transformer.blocks):
        for t in layer_types or ALL_LAYER_TYPES:
            for suffix in LAYER_TYPES[t]:
                linear = block.get_submodule(suffix)
                tensors[f"blocks.{i}.{suffix}.lora_A.weight"] = torch.randn(rank, linear.in_features, generator=g) * scale
                tensors[f"blocks.{i}.{suffix}.lora_B.weight"] = torch.randn(linear.out_features, rank, generator=g) * scale
    info = {"base": base_model_info(transformer.config)}
    if kind:
        info["kind"] = kind
    return LoraWeights(tensors, rank, float(alpha), info)
