"""The FAT network (Fan et al., NeurIPS 2023), built from a `FATConfig`.

Each module has a static `complexity(cx, ...)` twin that walks the same structure with the
layer costs of `fatnas.model.counting`; `FAT.complexity(cfg, h, w)` is the whole network's exact
fvcore-equivalent cost, known without building anything.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import NUM_STAGES, BlockPlan, FATConfig, plan
from .counting import Cx, attention_cx, avgpool_cx, batchnorm2d_cx, conv2d_cx, groupnorm_cx, linear_cx


def depthwise(c: int, k: int, stride: int = 1) -> nn.Conv2d:
    """DW(k, s): depthwise k x k convolution, padding k // 2, with bias."""
    return nn.Conv2d(c, c, k, stride, k // 2, groups=c)


def pointwise(c_in: int, c_out: int) -> nn.Conv2d:
    """PW(a -> b): 1 x 1 convolution with bias."""
    return nn.Conv2d(c_in, c_out, 1)


def depthwise_cx(cx: Cx, c: int, k: int, stride: int = 1) -> Cx:
    return conv2d_cx(cx, c, c, k, stride=stride, groups=c)


def pointwise_cx(cx: Cx, c_in: int, c_out: int) -> Cx:
    return conv2d_cx(cx, c_in, c_out, 1)


class LayerNorm2d(nn.GroupNorm):
    """LN: GroupNorm with one group, a LayerNorm over C, H, W with affine."""

    def __init__(self, c: int) -> None:
        super().__init__(1, c)

    @staticmethod
    def complexity(cx: Cx, c: int) -> Cx:
        return groupnorm_cx(cx, c)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class Stem(nn.Module):
    """Four 3x3 conv-BN-ReLU (strides 2, 2, 1, 1), then PW and LN: overall stride 4."""

    def __init__(self, in_chans: int, c: int) -> None:
        super().__init__()
        chans = [in_chans, c // 2, c, c, c]
        layers: list[nn.Module] = []
        for i, stride in enumerate((2, 2, 1, 1)):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride, 1), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True)]
        layers += [pointwise(c, c), LayerNorm2d(c)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @staticmethod
    def complexity(cx: Cx, in_chans: int, c: int) -> Cx:
        chans = [in_chans, c // 2, c, c, c]
        for i, stride in enumerate((2, 2, 1, 1)):
            conv2d_cx(cx, chans[i], chans[i + 1], 3, stride=stride)
            batchnorm2d_cx(cx, chans[i + 1])
        pointwise_cx(cx, c, c)
        return LayerNorm2d.complexity(cx, c)


class RefinedDownsample(nn.Sequential):
    """down_w: log2(w) steps of DW(5, 2) + BN, with a PW between consecutive steps."""

    def __init__(self, c: int, window: int) -> None:
        layers: list[nn.Module] = []
        for step in range(int(math.log2(window))):
            if step > 0:
                layers.append(pointwise(c, c))
            layers += [depthwise(c, 5, 2), nn.BatchNorm2d(c)]
        super().__init__(*layers)

    @staticmethod
    def complexity(cx: Cx, c: int, window: int) -> Cx:
        for step in range(int(math.log2(window))):
            if step > 0:
                pointwise_cx(cx, c, c)
            depthwise_cx(cx, c, 5, 2)
            batchnorm2d_cx(cx, c)
        return cx


class FASA(nn.Module):
    """Fully adaptive self-attention: pooled global attention and a local DW branch, each gating the other."""

    def __init__(self, c: int, heads: int, kernel: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (c // heads) ** -0.5
        self.q = pointwise(c, c)
        self.down = RefinedDownsample(c, window)
        self.kv = pointwise(c, 2 * c)
        self.local = depthwise(c, kernel)
        self.proj = pointwise(c, c)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        q = self.q(y)
        k, v = self.kv(self.down(y)).chunk(2, dim=1)
        g = self._global_attention(q, k, v).reshape(b, c, h, w)
        local = self.local(q)
        local = local * torch.sigmoid(local)
        local = local * torch.sigmoid(g)
        return self.proj(local * g)

    def _global_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c = q.shape[:2]
        dh = c // self.heads
        q = q.reshape(b, self.heads, dh, -1).transpose(-1, -2)  # b, h, N, dh
        k = k.reshape(b, self.heads, dh, -1)  # b, h, dh, M
        v = v.reshape(b, self.heads, dh, -1).transpose(-1, -2)  # b, h, M, dh
        attn = torch.softmax((q * self.scale) @ k, dim=-1)
        return (attn @ v).transpose(-1, -2)  # b, h, dh, N

    @staticmethod
    def complexity(cx: Cx, c: int, kernel: int, window: int) -> Cx:
        h, w = cx.h, cx.w
        pointwise_cx(cx, c, c)  # q
        RefinedDownsample.complexity(cx, c, window)
        pointwise_cx(cx, c, 2 * c)  # kv
        attention_cx(cx, c, h * w, cx.h * cx.w)
        cx.h, cx.w = h, w
        depthwise_cx(cx, c, kernel)  # local
        return pointwise_cx(cx, c, c)  # proj


class ConvFFN(nn.Module):
    """PW(C -> Hd), GELU, DW(m) (residual at stride 1), BN, PW(Hd -> C')."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.residual = stride == 1
        self.fc1 = pointwise(c_in, hidden)
        self.act = nn.GELU()
        self.dw = depthwise(hidden, kernel, stride)
        self.norm = nn.BatchNorm2d(hidden)
        self.fc2 = pointwise(hidden, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.act(self.fc1(x))
        z = z + self.dw(z) if self.residual else self.dw(z)
        return self.fc2(self.norm(z))

    @staticmethod
    def complexity(cx: Cx, c_in: int, hidden: int, c_out: int, kernel: int, stride: int) -> Cx:
        pointwise_cx(cx, c_in, hidden)
        depthwise_cx(cx, hidden, kernel, stride)
        batchnorm2d_cx(cx, hidden)
        return pointwise_cx(cx, hidden, c_out)


class DownsampleShortcut(nn.Sequential):
    """The FFN shortcut of a stride-2 block: DW(m, 2), BN, PW(C -> C')."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__(depthwise(c_in, kernel, 2), nn.BatchNorm2d(c_in), pointwise(c_in, c_out))

    @staticmethod
    def complexity(cx: Cx, c_in: int, c_out: int, kernel: int) -> Cx:
        depthwise_cx(cx, c_in, kernel, 2)
        batchnorm2d_cx(cx, c_in)
        return pointwise_cx(cx, c_in, c_out)


class FATBlock(nn.Module):
    """Positional DW, then LN + FASA, then LN + ConvFFN, each residual (with stochastic depth)."""

    def __init__(self, p: BlockPlan) -> None:
        super().__init__()
        self.pos = depthwise(p.c_in, p.kernel)
        self.norm1 = LayerNorm2d(p.c_in)
        self.mixer = FASA(p.c_in, p.heads, p.kernel, p.window)
        self.norm2 = LayerNorm2d(p.c_in)
        self.ffn = ConvFFN(p.c_in, p.ffn_hidden, p.c_out, p.ffn_kernel, p.stride)
        self.shortcut = DownsampleShortcut(p.c_in, p.c_out, p.ffn_kernel) if p.stride == 2 else nn.Identity()
        self.drop_path = DropPath(p.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_ffn(self.forward_mixer(x))

    def forward_mixer(self, x: torch.Tensor) -> torch.Tensor:
        """Positional DW and the attention residual: the map at the block's input size."""
        x = x + self.pos(x)
        return x + self.drop_path(self.mixer(self.norm1(x)))

    def forward_ffn(self, x: torch.Tensor) -> torch.Tensor:
        """The FFN residual, which downsamples in a stride-2 block."""
        return self.shortcut(x) + self.drop_path(self.ffn(self.norm2(x)))

    @staticmethod
    def complexity(cx: Cx, p: BlockPlan) -> Cx:
        depthwise_cx(cx, p.c_in, p.kernel)  # pos
        LayerNorm2d.complexity(cx, p.c_in)
        FASA.complexity(cx, p.c_in, p.kernel, p.window)
        LayerNorm2d.complexity(cx, p.c_in)
        h, w = cx.h, cx.w
        ConvFFN.complexity(cx, p.c_in, p.ffn_hidden, p.c_out, p.ffn_kernel, p.stride)
        if p.stride == 2:
            cx.h, cx.w = h, w
            DownsampleShortcut.complexity(cx, p.c_in, p.c_out, p.ffn_kernel)
        return cx


class Head(nn.Module):
    """LN, global average pool, linear classifier."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(self.norm(x)).flatten(1)
        return x if pre_logits else self.fc(x)

    @staticmethod
    def complexity(cx: Cx, c: int, num_classes: int) -> Cx:
        LayerNorm2d.complexity(cx, c)
        avgpool_cx(cx, c)
        return linear_cx(cx, c, num_classes)


class FAT(nn.Module):
    """A FAT network: stem, four stages of FAT blocks, classification head.

    It speaks timm's model interface (`forward_features`, `forward_head`, `reset_classifier`,
    `feature_info`, `forward_intermediates`, `pretrained_cfg`), so it serves as a backbone. The
    feature taps are the maps just before each stage downsamples (see `feature_taps`).
    """

    def __init__(self, cfg: FATConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = Stem(cfg.in_chans, cfg.widths[0])
        blocks = plan(cfg)
        self.stages = nn.ModuleList(
            nn.Sequential(*(FATBlock(p) for p in blocks if p.stage == s)) for s in range(NUM_STAGES)
        )
        self.head = Head(cfg.widths[-1], cfg.num_classes)
        self.num_classes = cfg.num_classes
        self.num_features = self.head_hidden_size = cfg.widths[-1]
        self.feature_info = feature_taps(cfg)
        self.pretrained_cfg = self.default_cfg = pretrained_cfg(cfg)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Norm, pool and (unless `pre_logits`) the classifier, on `forward_features`' output."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised classifier with `num_classes` outputs (0: none, pooled features out)."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool {global_pool!r}: FAT pools by average only ('avg')")
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head.fc.apply(_init_weights)

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The tapped maps at `indices` (timm's convention: an int n is the last n), and the final features."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r}: FAT gives NCHW maps only")
        take = tap_indices(indices)
        last = max(take) if stop_early or intermediates_only else NUM_STAGES - 1
        maps = []
        x = self.stem(x)
        for s in range(last + 1):
            *body, final = self.stages[s]
            for block in body:
                x = block(x)
            x = final.forward_mixer(x)
            if s < NUM_STAGES - 1 and s in take:
                maps.append(x)
            x = final.forward_ffn(x)
        if NUM_STAGES - 1 in take:
            maps.append(x)
        if intermediates_only:
            return maps
        return x, maps

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last tap (and the head), as timm's features_only does; returns the taps."""
        take = tap_indices(indices)
        for s in range(max(take) + 1, NUM_STAGES):
            self.stages[s] = nn.Sequential()
        if prune_head:
            self.reset_classifier(0)
            if prune_norm:
                self.head.norm = nn.Identity()
        return take

    @staticmethod
    def complexity(cfg: FATConfig, height: int, width: int | None = None) -> Cx:
        """Exact params and fvcore FLOPs by operator, at batch 1, for a height x width input."""
        cx = Cx(height, height if width is None else width)
        Stem.complexity(cx, cfg.in_chans, cfg.widths[0])
        for p in plan(cfg):
            FATBlock.complexity(cx, p)
        return Head.complexity(cx, cfg.widths[-1], cfg.num_classes)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def feature_taps(cfg: FATConfig) -> list[dict]:
    """timm's feature_info: the map of each stage at its own stride, before it downsamples.

    Stages 0-2 are tapped inside their last block, after its attention residual and before its
    FFN (whose DW conv downsamples); stage 3 at its output. The maps sit at strides 4, 8, 16 and
    32 with the stage's own width, what FPN-style necks expect (the stage outputs are at 8, 16,
    32 and 32). `module` names the block tapped.
    """
    return [dict(num_chs=cfg.widths[s], reduction=4 * 2 ** s, module=f"stages.{s}.{cfg.depths[s] - 1}",
                 stage=s, tap="block output" if s == NUM_STAGES - 1 else "after attention, before the FFN")
            for s in range(NUM_STAGES)]


def tap_indices(indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
    """Stage indices to tap: None is all four, an int n the last n, a list its members (negative from the end)."""
    if indices is None:
        indices = NUM_STAGES
    if isinstance(indices, int):
        if not 0 < indices <= NUM_STAGES:
            raise ValueError(f"indices {indices}: take the last 1 to {NUM_STAGES} stages")
        return list(range(NUM_STAGES - indices, NUM_STAGES))
    take = [i % NUM_STAGES if -NUM_STAGES <= i < NUM_STAGES else None for i in indices]
    if None in take or not take:
        raise ValueError(f"indices {list(indices)}: stage indices lie in -{NUM_STAGES}..{NUM_STAGES - 1}")
    return sorted(set(take))


def pretrained_cfg(cfg: FATConfig, res: int = 224) -> dict:
    """timm's pretrained_cfg: input size, normalisation and crop of ImageNet-style evaluation; no weights."""
    three = cfg.in_chans == 3
    return dict(url="", hf_hub_id=None, num_classes=cfg.num_classes, input_size=(cfg.in_chans, res, res),
                pool_size=(res // 32, res // 32), crop_pct=0.9, crop_mode="center", interpolation="bicubic",
                fixed_input_size=False, mean=IMAGENET_MEAN if three else (0.5,) * cfg.in_chans,
                std=IMAGENET_STD if three else (0.5,) * cfg.in_chans, first_conv="stem.layers.0",
                classifier="head.fc", license="none: no pretrained weights", tag="")


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
