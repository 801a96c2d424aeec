"""SEA-RAFT optical flow (Wang, Lipson, Deng, ECCV 2024), frozen and differentiable, for the motion loss.

The motion LoRA's loss (MoRA) compares the optical flow of decoded frames with the flow of the reference
video, so gradients must pass through the flow network into its input images. This is a re-implementation
of the official model (github.com/princeton-vl/SEA-RAFT, `core/`) that keeps its module and parameter names,
so the official checkpoints (`Tartan-C-T-TSKH-spring540x960-M` on the hub or the authors' `.pth`) load with
`strict=True`, and its numerics: the [-1, 1] input scaling, replicate padding to a multiple of 8, the
regressed initial flow, the 4-level all-pairs correlation pyramid looked up with `grid_sample`, the ConvNeXt
update blocks and the learned convex 8x upsampling. `scripts/check_searaft_equivalence.py` checks it against
the official code (see benchmarks/README.md).

Conventions: `SEARAFT.forward` takes images in [0, 255] like the official model; `compute_flow` takes the
package's [0, 1] images and returns flow in pixels, (B, 2, H, W), channel 0 = x (right), 1 = y (down).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import SmraboothError
from ..recipes import SEARAFT_SPRING_M as HUB_ID_M

CORR_LEVELS = 4  # fixed in the official model (RAFT.__init__ sets args.corr_levels = 4)
MIN_SIZE = 128  # the coarsest correlation level must be >= 2 cells wide: (size / 8) / 2**3 >= 2
MAX_WIDTH = 4096  # channels of a layer: the official models use at most 256
WEIGHTS_NAME = "model.safetensors"  # what huggingface_hub's PyTorchModelHubMixin writes
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class SEARAFTConfig:
    """The official model arguments that shape the network (names as in the official JSON configs).

    `iters` is the default number of refinement iterations (the official eval/spring-M config uses 4).
    `scale` is the official `calc_flow` rule: frames are resized by 2**scale (bilinear) before the network
    and the flow is resized back and multiplied by 2**-scale. The official spring-M config uses -1 (run
    at half resolution), which is also 16x less memory for the all-pairs correlation volume; use 0 to
    run at the frames' own resolution. `use_var`, `var_min`, `var_max` only shape the training loss's
    uncertainty term; they are kept so official configs round-trip.
    """

    pretrain: str = "resnet34"  # encoder depth: "resnet18" (2-2-2 blocks) or "resnet34" (3-4-6 blocks)
    initial_dim: int = 64
    block_dims: tuple[int, int, int] = (64, 128, 256)
    radius: int = 4
    dim: int = 128
    num_blocks: int = 2
    iters: int = 4
    use_var: bool = True
    var_min: float = 0.0
    var_max: float = 10.0
    scale: int = -1

    def __post_init__(self):
        from ..readers import short_repr
        from ..validation import check_number

        if self.pretrain not in ("resnet18", "resnet34"):
            raise SmraboothError(f"SEA-RAFT 'pretrain' must be 'resnet18' or 'resnet34', got {short_repr(self.pretrain)}")
        if not isinstance(self.block_dims, (list, tuple)) or len(self.block_dims) != 3:
            raise SmraboothError(f"SEA-RAFT 'block_dims' needs 3 entries, got {short_repr(self.block_dims)}")
        # the sizes checked before a network is built from them (a config of another model, or a damaged one,
        # would otherwise build a network of 10^18 bytes)
        for name, value in (("initial_dim", self.initial_dim), *(("block_dims", d) for d in self.block_dims),
                            ("dim", self.dim)):
            check_number(f"SEA-RAFT '{name}'", value, 2, MAX_WIDTH, integer=True)
        check_number("SEA-RAFT 'radius'", self.radius, 1, 16, integer=True)
        check_number("SEA-RAFT 'num_blocks'", self.num_blocks, 1, 16, integer=True)
        check_number("SEA-RAFT 'iters'", self.iters, 1, 100, integer=True)
        check_number("SEA-RAFT 'scale'", self.scale, -4, 4, integer=True)
        check_number("SEA-RAFT 'var_min'", self.var_min)
        check_number("SEA-RAFT 'var_max'", self.var_max)
        if not isinstance(self.use_var, bool):
            raise SmraboothError(f"SEA-RAFT 'use_var' must be true or false, got {short_repr(self.use_var)}")
        object.__setattr__(self, "block_dims", tuple(int(d) for d in self.block_dims))

    @classmethod
    def from_dict(cls, data: dict) -> SEARAFTConfig | None:
        """Read an official JSON config (or the hub's config.json); unknown keys are ignored.

        Returns None when the dict holds none of the architecture keys."""
        if isinstance(data.get("args"), dict):  # PyTorchModelHubMixin stores init kwargs by name
            data = data["args"]
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**values) if values else None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["block_dims"] = list(self.block_dims)
        return out

    @classmethod
    def spring_m(cls) -> SEARAFTConfig:
        """Tartan-C-T-TSKH-spring540x960-M, the checkpoint SMRABooth uses (official config/eval/spring-M.json)."""
        return cls()

    @classmethod
    def tiny(cls) -> SEARAFTConfig:
        """A few-thousand-parameter model for tests (random weights only)."""
        return cls(
            pretrain="resnet18", initial_dim=8, block_dims=(8, 12, 16), radius=2, dim=16, num_blocks=1, iters=2, scale=0
        )


SEARAFT_M = SEARAFTConfig.spring_m()
SEARAFT_TINY = SEARAFTConfig.tiny()


# ----------------------------------------------------------------------------------------------------------
# Encoders (official core/layer.py + core/extractor.py). Written out here so there is no torchvision
# dependency; the official code only uses torchvision to initialise from ImageNet weights before training.


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1)


class BasicBlock(nn.Module):
    """ResNet basic block with biased convs. The shortcut's norm is registered twice (as `bn3` and as
    `downsample.1`), as in the official code, so both key names exist in its state dicts."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.conv2 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_planes == planes:
            self.downsample = None
        else:
            self.bn3 = nn.BatchNorm2d(planes)
            self.downsample = nn.Sequential(conv1x1(in_planes, planes, stride=stride), self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class ResNetFPN(nn.Module):
    """ResNet18/34 stem + 3 stages down to 1/8 resolution, then a 1x1 projection (official `ResNetFPN`)."""

    def __init__(self, config: SEARAFTConfig, input_dim: int, output_dim: int):
        super().__init__()
        n_blocks = (3, 4, 6) if config.pretrain == "resnet34" else (2, 2, 2)
        d0, d1, d2 = config.block_dims
        self.conv1 = nn.Conv2d(input_dim, config.initial_dim, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(config.initial_dim)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(config.initial_dim, d0, stride=1, num=n_blocks[0])  # 1/2
        self.layer2 = self._make_layer(d0, d1, stride=2, num=n_blocks[1])  # 1/4
        self.layer3 = self._make_layer(d1, d2, stride=2, num=n_blocks[2])  # 1/8
        self.final_conv = conv1x1(d2, output_dim)

    @staticmethod
    def _make_layer(in_planes: int, dim: int, stride: int, num: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, dim, stride), *[BasicBlock(dim, dim) for _ in range(num - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.final_conv(x)


# ----------------------------------------------------------------------------------------------------------
# Update block (official core/update.py + ConvNextBlock from core/layer.py).


class ConvNextBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm (channels last) -> MLP x4 -> layer scale, residual, then a 1x1 conv
    from `dim` to `output_dim` channels."""

    def __init__(self, dim: int, output_dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * output_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * output_dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        self.final = nn.Conv2d(dim, output_dim, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return self.final(x + y)


class BasicMotionEncoder(nn.Module):
    def __init__(self, corr_channels: int, dim: int):
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channels, dim * 2, 1, padding=0)
        self.convc2 = nn.Conv2d(dim * 2, dim + dim // 2, 3, padding=1)
        self.convf1 = nn.Conv2d(2, dim, 7, padding=3)
        self.convf2 = nn.Conv2d(dim, dim // 2, 3, padding=1)
        self.conv = nn.Conv2d(dim * 2, dim - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class BasicUpdateBlock(nn.Module):
    def __init__(self, config: SEARAFTConfig):
        super().__init__()
        dim = config.dim
        corr_channels = CORR_LEVELS * (2 * config.radius + 1) ** 2
        self.encoder = BasicMotionEncoder(corr_channels, dim)
        self.refine = nn.ModuleList([ConvNextBlock(3 * dim, dim) for _ in range(config.num_blocks)])

    def forward(self, net: torch.Tensor, context: torch.Tensor, corr: torch.Tensor, flow: torch.Tensor):
        inp = torch.cat([context, self.encoder(flow, corr)], dim=1)
        for blk in self.refine:
            net = blk(torch.cat([net, inp], dim=1))
        return net


# ----------------------------------------------------------------------------------------------------------
# Correlation (official core/corr.py CorrBlock + utils.bilinear_sampler), written with tensors only.


def coords_grid(batch: int, ht: int, wd: int, device) -> torch.Tensor:
    """(B, 2, ht, wd) pixel coordinates, channel 0 = x, channel 1 = y."""
    ys, xs = torch.meshgrid(torch.arange(ht, device=device), torch.arange(wd, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=0).float()[None].repeat(batch, 1, 1, 1)


def build_corr_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor) -> list[torch.Tensor]:
    """All-pairs correlation of fmap1 with fmap2 and with fmap2 halved 1..3 times (bilinear), each as
    (B*h*w, 1, h2, w2), scaled by 1/sqrt(channels)."""
    b, c, h, w = fmap1.shape
    f1 = fmap1.view(b, c, h * w).transpose(1, 2)
    norm = torch.sqrt(torch.tensor(c).float())
    pyramid = []
    for i in range(CORR_LEVELS):
        if i > 0:
            fmap2 = F.interpolate(fmap2, scale_factor=0.5, mode="bilinear", align_corners=False)
        h2, w2 = fmap2.shape[-2:]
        corr = f1 @ fmap2.reshape(b, c, h2 * w2)
        pyramid.append(corr.reshape(b * h * w, 1, h2, w2) / norm)
    return pyramid


def lookup_corr(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int) -> torch.Tensor:
    """Sample a (2r+1)^2 window of every pyramid level around `coords` (B, 2, h, w) -> (B, 4(2r+1)^2, h, w).

    The window is ordered as in RAFT: the x offset varies over the OUTER index and y over the inner one.
    The trained weights of `convc1` depend on this order."""
    b, _, h, w = coords.shape
    offsets = torch.linspace(-radius, radius, 2 * radius + 1, device=coords.device)
    delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).view(
        1, 2 * radius + 1, 2 * radius + 1, 2
    )
    centroid = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
    out = []
    for i, corr in enumerate(pyramid):
        xy = centroid / 2**i + delta
        H2, W2 = corr.shape[-2:]
        x, y = xy.split([1, 1], dim=-1)  # align_corners=True: pixel centres at -1 .. 1
        grid = torch.cat([2 * x / (W2 - 1) - 1, 2 * y / (H2 - 1) - 1], dim=-1)
        sampled = F.grid_sample(corr, grid, align_corners=True)
        out.append(sampled.view(b, h, w, -1))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()


def pad_to_multiple_of_8(ht: int, wd: int) -> list[int]:
    """F.pad amounts [left, right, top, bottom] of the official InputPadder ('sintel' mode: centred)."""
    pad_ht = (((ht // 8) + 1) * 8 - ht) % 8
    pad_wd = (((wd // 8) + 1) * 8 - wd) % 8
    return [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2]


# ----------------------------------------------------------------------------------------------------------


class SEARAFT(nn.Module):
    """SEA-RAFT with the official module names (`cnet`, `init_conv`, `upsample_weight`, `flow_head`, `fnet`,
    `update_block`).

    Settings that do not change values: `use_checkpointing` recomputes each refinement iteration in the
    backward pass instead of storing its activations; `detach_flow` (default True, as the official model)
    stops gradients through the flow estimate between iterations; gradients still reach the images
    through the features, the context and the correlation values. Set it False for the full gradient.
    """

    def __init__(self, config: SEARAFTConfig = SEARAFT_M):
        super().__init__()
        self.config = config
        dim = config.dim
        self.cnet = ResNetFPN(config, input_dim=6, output_dim=2 * dim)
        self.init_conv = conv3x3(2 * dim, 2 * dim)
        self.upsample_weight = nn.Sequential(  # convex-combination weights of 3x3 neighbours, per 8x8 pixel
            nn.Conv2d(dim, dim * 2, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(dim * 2, 64 * 9, 1, padding=0)
        )
        self.flow_head = nn.Sequential(  # flow (2) + mixture weight (2) + log b (2)
            nn.Conv2d(dim, 2 * dim, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(2 * dim, 6, 3, padding=1)
        )
        if config.iters > 0:  # the official model builds these only for iterative configs
            self.fnet = ResNetFPN(config, input_dim=3, output_dim=2 * dim)
            self.update_block = BasicUpdateBlock(config)
        self.iters = config.iters  # default iteration count; load_searaft(iters=...) changes it
        self.use_checkpointing = False
        self.detach_flow = True

    @staticmethod
    def upsample_data(flow: torch.Tensor, info: torch.Tensor, mask: torch.Tensor):
        """(B, C, h, w) at 1/8 -> (B, C, 8h, 8w): each pixel is a softmax-weighted mix of its 3x3 cell
        neighbourhood; flow is multiplied by 8 to be in full-resolution pixels."""
        n, c, h, w = info.shape
        mask = torch.softmax(mask.view(n, 1, 9, 8, 8, h, w), dim=2)
        up_flow = F.unfold(8 * flow, [3, 3], padding=1).view(n, 2, 9, 1, 1, h, w)
        up_info = F.unfold(info, [3, 3], padding=1).view(n, c, 9, 1, 1, h, w)
        up_flow = torch.sum(mask * up_flow, dim=2).permute(0, 1, 4, 2, 5, 3)
        up_info = torch.sum(mask * up_info, dim=2).permute(0, 1, 4, 2, 5, 3)
        return up_flow.reshape(n, 2, 8 * h, 8 * w), up_info.reshape(n, c, 8 * h, 8 * w)

    def _heads(self, net: torch.Tensor):
        return self.flow_head(net), 0.25 * self.upsample_weight(net)

    def _iteration(self, pyramid, net, context, flow_8x):
        h, w = flow_8x.shape[-2:]
        coords2 = (coords_grid(flow_8x.shape[0], h, w, flow_8x.device) + flow_8x).detach()
        corr = lookup_corr(pyramid, coords2, self.config.radius)
        net = self.update_block(net, context, corr, flow_8x)
        flow_update, weight_update = self._heads(net)
        return net, flow_8x + flow_update[:, :2], flow_update[:, 2:], weight_update

    def forward(
        self, image1: torch.Tensor, image2: torch.Tensor, iters: int | None = None, all_iterations: bool = False
    ):
        """Flow from image1 to image2, both (B, 3, H, W) RGB in [0, 255] (the official convention).

        Returns {"final": flow (B, 2, H, W), "flow": [...], "info": [...]}: the lists hold the upsampled
        prediction (and its 4-channel uncertainty map) of every iteration (index 0 = regressed initial
        flow) when `all_iterations`, else only the last one (cheaper: the others are never upsampled)."""
        iters = self.iters if iters is None else iters
        if iters > 0 and self.config.iters <= 0:
            raise SmraboothError("this SEA-RAFT config has iters=0 (no update block); call it with iters=0")
        ht, wd = image1.shape[-2:]
        pad = pad_to_multiple_of_8(ht, wd)
        if min(ht + pad[2] + pad[3], wd + pad[0] + pad[1]) < MIN_SIZE:
            raise SmraboothError(
                f"SEA-RAFT needs network inputs of at least {MIN_SIZE}x{MIN_SIZE} pixels (its 4-level "
                f"correlation pyramid at 1/8 resolution), got {ht}x{wd}; resize the frames up"
            )
        image1 = F.pad((2 * (image1 / 255.0) - 1.0).contiguous(), pad, mode="replicate")
        image2 = F.pad((2 * (image2 / 255.0) - 1.0).contiguous(), pad, mode="replicate")

        net, context = torch.split(
            self.init_conv(self.cnet(torch.cat([image1, image2], dim=1))), [self.config.dim] * 2, dim=1
        )
        flow_update, weight_update = self._heads(net)  # iteration 0: regress the flow directly
        flow_8x, info_8x = flow_update[:, :2], flow_update[:, 2:]
        flows, infos = [], []

        def keep(flow_8x, info_8x, weight_update):
            flow_up, info_up = self.upsample_data(flow_8x, info_8x, weight_update)
            flows.append(flow_up[..., pad[2] : pad[2] + ht, pad[0] : pad[0] + wd])
            infos.append(info_up[..., pad[2] : pad[2] + ht, pad[0] : pad[0] + wd])

        if all_iterations or iters == 0:
            keep(flow_8x, info_8x, weight_update)
        if self.config.iters > 0:  # the official model builds the features even when called with iters=0
            pyramid = build_corr_pyramid(self.fnet(image1), self.fnet(image2))
        for itr in range(iters):
            if self.detach_flow:
                flow_8x = flow_8x.detach()
            if self.use_checkpointing and torch.is_grad_enabled():
                net, flow_8x, info_8x, weight_update = checkpoint(
                    self._iteration, pyramid, net, context, flow_8x, use_reentrant=False
                )
            else:
                net, flow_8x, info_8x, weight_update = self._iteration(pyramid, net, context, flow_8x)
            if all_iterations or itr == iters - 1:
                keep(flow_8x, info_8x, weight_update)
        return {"final": flows[-1], "flow": flows, "info": infos}


def compute_flow(model: SEARAFT, image1: torch.Tensor, image2: torch.Tensor, iters: int | None = None) -> torch.Tensor:
    """Optical flow from image1 to image2, (B, 2, H, W) in pixels at the input resolution.

    image1, image2: (B, 3, H, W) RGB float in [0, 1] (the package's convention), any H and W; gradients
    flow back into both. Frames are resized by 2**config.scale first when scale != 0 (the official
    `calc_flow`), and the network pads them to a multiple of 8 itself."""
    if image1.ndim != 4 or image1.shape[1] != 3 or image1.shape != image2.shape:
        raise SmraboothError(
            f"compute_flow needs two (B, 3, H, W) RGB batches of the same shape, got {tuple(image1.shape)} "
            f"and {tuple(image2.shape)}"
        )
    dtype = next(model.parameters()).dtype
    image1, image2 = 255.0 * image1.to(dtype), 255.0 * image2.to(dtype)
    scale = model.config.scale
    if scale == 0:
        return model(image1, image2, iters=iters)["final"]
    ht, wd = image1.shape[-2:]
    image1 = F.interpolate(image1, scale_factor=2**scale, mode="bilinear", align_corners=False)
    image2 = F.interpolate(image2, scale_factor=2**scale, mode="bilinear", align_corners=False)
    try:
        flow = model(image1, image2, iters=iters)["final"]
    except SmraboothError as e:
        raise SmraboothError(f"{e} (the {ht}x{wd} frames are resized by 2**{scale} first: config.scale)") from None
    # Official: scale_factor=0.5**scale; an explicit size gives the same grid and also handles odd sizes.
    return F.interpolate(flow, size=(ht, wd), mode="bilinear", align_corners=False) * (0.5**scale)


# ----------------------------------------------------------------------------------------------------------
# Loading and saving.


def _aliases(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict keys that are one tensor (the official blocks register `bn3` twice).
    safetensors' `save_model` (used by PyTorchModelHubMixin) stores only one name of each group."""
    groups: dict[tuple, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault((t.data_ptr(), t.dtype, tuple(t.shape)), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def check_state_dict(model: SEARAFT, state_dict: dict, source: str) -> dict:
    """Return `state_dict` completed for aliased keys, or raise naming the first key that does not fit."""
    state_dict = dict(state_dict)
    for names in _aliases(model):
        present = [n for n in names if n in state_dict]
        for n in names:
            if present and n not in state_dict:
                state_dict[n] = state_dict[present[0]]
    expected = model.state_dict()
    hint = (
        f"it does not match the SEA-RAFT config {model.config.to_dict()}; use the checkpoint the config "
        f"describes (SMRABooth uses {HUB_ID_M}) or pass the matching SEARAFTConfig"
    )
    for key, value in expected.items():
        if key not in state_dict:
            if key.endswith("num_batches_tracked"):  # a BatchNorm counter, unused in eval mode
                state_dict[key] = value
                continue
            raise SmraboothError(f"{source}: missing key '{key}' (shape {tuple(value.shape)}); {hint}")
        got = state_dict[key]
        if tuple(got.shape) != tuple(value.shape):
            raise SmraboothError(
                f"{source}: key '{key}' has shape {tuple(got.shape)} in the checkpoint but "
                f"{tuple(value.shape)} in the model; {hint}"
            )
    for key, value in state_dict.items():
        if key not in expected:
            raise SmraboothError(f"{source}: unexpected key '{key}' (shape {tuple(value.shape)}); {hint}")
    return state_dict


def _read_pth(path: Path) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with code, truncated files
        raise SmraboothError(
            f"{path}: cannot read as a weights-only torch checkpoint ({type(e).__name__}: {e})"
        ) from None
    for wrapper in ("state_dict", "model"):  # training checkpoints sometimes nest the weights
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise SmraboothError(f"{path}: expected a state dict, found a {type(sd).__name__}")
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise SmraboothError(f"{path}: cannot read as safetensors ({type(e).__name__}: {e})") from None


def check_flow_model(flow_model: str, flag: str = "--flow-model") -> None:
    """A trainer's SEA-RAFT setting, checked before any model loads: a hub id, a checkpoint file, or a folder that
    `check_searaft_folder` accepts; a path that is none of these is a missing folder."""
    from .wan import check_model_source

    if flow_model and not os.path.exists(flow_model):
        check_model_source(flow_model, flag, folder_check=None)
    elif flow_model and os.path.isdir(flow_model):
        check_searaft_folder(flow_model)


def check_searaft_folder(path) -> SEARAFTConfig | None:
    """A SEA-RAFT checkpoint folder as far as it can be checked before it loads: its weights file is there and its
    config.json (if any) is a SEA-RAFT's, of sizes a network can be built from. Returns that config."""
    path = Path(path)
    if not (path / WEIGHTS_NAME).is_file():
        raise SmraboothError(f"{path}: no {WEIGHTS_NAME} in this folder; expected a SEA-RAFT checkpoint folder")
    return _read_config(path / CONFIG_NAME)


def _read_config(path: Path) -> SEARAFTConfig | None:
    if not path.is_file():
        return None
    from ..readers import read_json

    data = read_json(path, dict, "a SEA-RAFT config")
    try:
        return SEARAFTConfig.from_dict(data)
    except SmraboothError as e:
        raise SmraboothError(f"{path}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise SmraboothError(f"{path} is not a SEA-RAFT config ({type(e).__name__}: {e})") from None


def _download(repo_id: str, local_files_only: bool | None) -> Path:
    from huggingface_hub import hf_hub_download

    kwargs = {} if local_files_only is None else {"local_files_only": local_files_only}
    try:
        weights = Path(hf_hub_download(repo_id, WEIGHTS_NAME, **kwargs))
    except Exception as e:
        raise SmraboothError(
            f"cannot get '{WEIGHTS_NAME}' of the SEA-RAFT checkpoint '{repo_id}' from the hub or its cache "
            f"({type(e).__name__}); on a machine with network run `huggingface-cli download {repo_id} "
            f"--local-dir <folder>` and pass that folder"
        ) from None
    try:  # the config is optional: without it the -M architecture is assumed
        hf_hub_download(repo_id, CONFIG_NAME, **kwargs)
    except Exception:
        pass
    return weights.parent


def load_searaft(
    path_or_id: str,
    device=None,
    local_files_only: bool | None = None,
    iters: int | None = None,
    config: SEARAFTConfig | None = None,
) -> SEARAFT:
    """Load a frozen SEA-RAFT in eval mode.

    path_or_id: a folder with model.safetensors (+ optional config.json, as PyTorchModelHubMixin saves),
    a `.safetensors` or `.pth` file, or a hub id such as "MemorySlices/Tartan-C-T-TSKH-spring540x960-M".
    The architecture comes from `config`, else the folder's config.json, else the -M config. `iters`
    overrides the default refinement iteration count."""
    path = Path(os.path.expanduser(path_or_id))
    file_config = None
    if path.is_dir():
        file_config = check_searaft_folder(path)
        weights = path / WEIGHTS_NAME
        state_dict, source = _read_safetensors(weights), str(weights)
    elif path.is_file() and path.suffix == ".safetensors":
        state_dict, source = _read_safetensors(path), str(path)
    elif path.is_file() and path.suffix in (".pth", ".pt", ".bin"):
        state_dict, source = _read_pth(path), str(path)
    elif path.is_file():
        raise SmraboothError(f"{path}: unknown checkpoint type; pass a .safetensors or .pth file or a folder")
    elif path_or_id.count("/") == 1 and not path_or_id.startswith((".", "/", "~")):
        folder = _download(path_or_id, local_files_only)
        file_config = _read_config(folder / CONFIG_NAME)
        state_dict, source = _read_safetensors(folder / WEIGHTS_NAME), f"{path_or_id}/{WEIGHTS_NAME}"
    else:
        raise SmraboothError(f"{path_or_id}: no such SEA-RAFT checkpoint file or folder")

    model = SEARAFT(config or file_config or SEARAFT_M)
    model.load_state_dict(check_state_dict(model, state_dict, source), strict=True)
    if iters is not None:
        model.iters = iters
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def save_searaft(model: SEARAFT, folder: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors in the layout PyTorchModelHubMixin uses (loadable by load_searaft)."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    save_model(model, str(folder / WEIGHTS_NAME))  # drops the duplicate `downsample.1` names, like the hub files
    return folder
