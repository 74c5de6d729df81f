"""
Registry of the small-target segmentation nets (pure torch; fvcore's Registry, not detectron2's
modeling code).

Each registered net is an ``nn.Module`` class whose constructor takes plain arguments and whose
classmethod ``from_config(cfg)`` returns those arguments read from ``cfg.MODEL.IRSTD``; it maps an
(N, C, H, W) image tensor to (N, 1, H, W) logits, or to a list of them (deep supervision, the last
one being the final output).
"""

from fvcore.common.registry import Registry

__all__ = ["IRSTD_NET_REGISTRY", "build_irstd_net", "staged_net_args"]

IRSTD_NET_REGISTRY = Registry("IRSTD_NET")
IRSTD_NET_REGISTRY.__doc__ = """
Registry of small-target segmentation nets, chosen by ``MODEL.IRSTD.NET``: the papers' "UNet",
"SGEMUNet", "AFFUNet" and "SIRST5KNet", and the baselines they compare with, "DNANet", "ACM",
"ALCNet", "ISNet" and "UIUNet". A net class has ``from_config(cfg) -> dict`` of constructor
arguments.
"""


def build_irstd_net(cfg):
    """
    The net named by ``cfg.MODEL.IRSTD.NET``, built from its ``from_config(cfg)`` arguments, with
    ``MODEL.IRSTD.NORM`` resolved as a detectron2 norm name (:func:`ir_d2.modeling.norm.
    resolve_norm`: "FrozenBN", "naiveSyncBN", ... mean what they mean in detectron2), then
    initialised (``MODEL.IRSTD.INIT``, ``MODEL.IRSTD.PRIOR_PROB``).
    """
    from ..norm import resolve_norm

    name = cfg.MODEL.IRSTD.NET
    if name not in IRSTD_NET_REGISTRY:
        known = sorted(k for k, _ in IRSTD_NET_REGISTRY)
        raise ValueError(f"MODEL.IRSTD.NET = {name!r} is not a registered net; known: {known}.")
    net_cls = IRSTD_NET_REGISTRY.get(name)
    args = net_cls.from_config(cfg)
    if "norm" in args:
        args["norm"] = resolve_norm(args["norm"], "MODEL.IRSTD.NORM")
    net = net_cls(**args)
    if cfg.MODEL.IRSTD.INIT != "default":
        if not hasattr(net, "init_weights"):
            raise ValueError(
                f"MODEL.IRSTD.INIT = {cfg.MODEL.IRSTD.INIT!r}, but net {name!r} has no "
                "init_weights(); set MODEL.IRSTD.INIT to 'default'."
            )
        net.init_weights(cfg.MODEL.IRSTD.INIT)
    prior = cfg.MODEL.IRSTD.PRIOR_PROB
    if prior > 0:
        if not hasattr(net, "set_output_prior"):
            raise ValueError(
                f"MODEL.IRSTD.PRIOR_PROB = {prior}, but net {name!r} has no set_output_prior(); "
                "set MODEL.IRSTD.PRIOR_PROB to 0."
            )
        net.set_output_prior(prior)
    return net


def staged_net_args(cfg) -> dict:
    """
    The constructor arguments that the nets built of stages read alike from ``cfg.MODEL.IRSTD``
    (DNANet, ACM, ALCNet, ISNet): ``in_channels``, ``channels`` and ``blocks`` (None where the key
    is ``[]``: the net's own), ``norm``.
    """
    ir = cfg.MODEL.IRSTD
    return {
        "in_channels": ir.IN_CHANNELS,
        "channels": list(ir.CHANNELS) or None,
        "blocks": list(ir.BLOCKS) or None,
        "norm": ir.NORM,
    }
