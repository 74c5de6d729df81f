"""
ResNet-FPN backbone with BNSA blocks between the ResNet outputs and the FPN (Wang & Ren 2025,
fig. 6), registered in detectron2's BACKBONE_REGISTRY as ``build_bnsa_resnet_fpn_backbone``.
"""

import functools

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import ResNet, build_resnet_backbone

from ..norm import resolve_norm
from .bnsa import BNSABlock

__all__ = ["BNSAResNet", "build_bnsa_resnet_fpn_backbone"]

_STAGES = ("res2", "res3", "res4", "res5")


class BNSAResNet(ResNet):
    """
    detectron2's ResNet whose outputs named in ``bnsa_stages`` pass through their own BNSA block
    (module ``bnsa_<stage>``) on their way out. The flow from stage to stage inside the ResNet is
    unchanged: the next stage still reads the plain stage output.

    The stem and stages keep detectron2's module names (``stem``, ``res2`` ... ``res5``), so
    detectron2 checkpoints load with only the ``bnsa_*`` parameters missing. ``freeze(freeze_at)``
    only touches the stem and stages, so the BNSA blocks always train.
    """

    def __init__(self, stem, stages, *, bnsa_stages=(), bnsa_block_fn=BNSABlock, **kwargs):
        super().__init__(stem, stages, **kwargs)
        self.bnsa_stages = tuple(bnsa_stages)
        for name in self.bnsa_stages:
            if name not in self._out_features:
                raise ValueError(
                    f"MODEL.BNSA.STAGES has {name!r}, which is not a ResNet output "
                    f"(MODEL.RESNETS.OUT_FEATURES = {list(self._out_features)})."
                )
            self.add_module(f"bnsa_{name}", bnsa_block_fn(self._out_feature_channels[name]))

    @classmethod
    def from_resnet(cls, resnet: ResNet, **kwargs) -> "BNSAResNet":
        """
        Wrap the stem and stages of an already built (and already frozen) detectron2 ResNet.
        """
        stages = [list(stage.children()) for stage in resnet.stages]
        return cls(
            resnet.stem,
            stages,
            num_classes=resnet.num_classes,
            out_features=list(resnet._out_features),
            freeze_at=0,  # the blocks are taken as they are, frozen or not
            **kwargs,
        )

    def forward(self, x):
        outputs = super().forward(x)
        for name in self.bnsa_stages:
            outputs[name] = getattr(self, f"bnsa_{name}")(outputs[name])
        return outputs


def _bnsa_block_fn(cfg):
    return functools.partial(
        BNSABlock,
        bottleneck_ratio=cfg.MODEL.BNSA.BOTTLENECK_RATIO,
        norm=resolve_norm(cfg.MODEL.BNSA.NORM, "MODEL.BNSA.NORM"),
        residual=cfg.MODEL.BNSA.RESIDUAL,
        layout=cfg.MODEL.BNSA.LAYOUT,
    )


def build_bnsa_resnet(cfg, input_shape: ShapeSpec) -> BNSAResNet:
    """detectron2's ResNet from ``cfg.MODEL.RESNETS`` with BNSA blocks at ``MODEL.BNSA.STAGES``."""
    stages = list(cfg.MODEL.BNSA.STAGES)
    unknown = [s for s in stages if s not in _STAGES]
    if unknown or len(set(stages)) != len(stages):
        raise ValueError(
            f"MODEL.BNSA.STAGES = {stages}: each entry must be one of {list(_STAGES)}, once."
        )
    resnet = build_resnet_backbone(cfg, input_shape)
    return BNSAResNet.from_resnet(resnet, bnsa_stages=stages, bnsa_block_fn=_bnsa_block_fn(cfg))


@BACKBONE_REGISTRY.register()
def build_bnsa_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """
    detectron2's ``build_resnet_fpn_backbone`` with a :class:`BNSAResNet` bottom-up.

    Parameter names are detectron2's (``bottom_up.res*``, ``fpn_lateral*``, ``fpn_output*``) plus
    ``bottom_up.bnsa_<stage>.*``.
    """
    return FPN(
        bottom_up=build_bnsa_resnet(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
