"""Loading the release's checkpoints (spec §8): its parameter names (reference_keys/) mapped onto ours."""
from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn as nn

from mmnas.errors import UserError

# (release pattern, our replacement), applied in order to each key after `module.` is stripped.
_RULES: list[tuple[str, str]] = [
    (r"^embedding\.", "text_encoder.embedding."),
    (r"^lstm\.", "text_encoder.lstm."),
    (r"^imgfeat_linear\.", "region_encoder.feat_linear."),
    (r"^bboxfeat_linear\.", "region_encoder.box_linear."),
    (r"^linear_y_rel\.", "geometry.linear."),
    (r"^attflat_x\.mlp\.fc\.linear\.", "head.flat_text.mlp.fc1."),
    (r"^attflat_x\.mlp\.linear\.", "head.flat_text.mlp.fc2."),
    (r"^attflat_x\.linear_merge\.", "head.flat_text.merge."),
    (r"^attflat_y\.mlp\.fc\.linear\.", "head.flat_image.mlp.fc1."),
    (r"^attflat_y\.mlp\.linear\.", "head.flat_image.mlp.fc2."),
    (r"^attflat_y\.linear_merge\.", "head.flat_image.merge."),
    (r"^attfc_y\.", "head.image_proj."),
    (r"^proj_norm\.a_2$", "head.norm.weight"),
    (r"^proj_norm\.b_2$", "head.norm.bias"),
    (r"^proj_scores\.", "head.score."),
    (r"^proj_reg\.", "head.box."),
    (r"^backnone\.cells_enc\.0\.dag\.(\d+)\.0\.candidate_ops\.(\d+)\.", r"backbone.encoder.nodes.\1.candidates.\2."),
    (r"^backnone\.cells_dec\.0\.dag\.(\d+)\.0\.candidate_ops\.(\d+)\.", r"backbone.decoder.nodes.\1.candidates.\2."),
    (r"^backnone\.cells_enc\.0\.dag\.(\d+)\.0\.alpha_prob$", r"backbone.encoder.nodes.\1.alpha"),
    (r"^backnone\.cells_dec\.0\.dag\.(\d+)\.0\.alpha_prob$", r"backbone.decoder.nodes.\1.alpha"),
    (r"^backnone\.cells_enc\.0\.dag\.(\d+)\.0\.alpha_gate$", r"backbone.encoder.nodes.\1.gate"),
    (r"^backnone\.cells_dec\.0\.dag\.(\d+)\.0\.alpha_gate$", r"backbone.decoder.nodes.\1.gate"),
    (r"^backnone\.cells_enc\.0\.dag\.(\d+)\.(\d+)\.", r"backbone.encoder.nodes.\1.ops.\2."),
    (r"^backnone\.cells_dec\.0\.dag\.(\d+)\.(\d+)\.", r"backbone.decoder.nodes.\1.ops.\2."),
    (r"\.mhatt\.linear_r\.", ".attention.linear_rel."),
    (r"\.mhatt\.", ".attention."),
    (r"\.mlp\.fc\.linear\.", ".mlp.fc1."),
    (r"\.mlp\.linear\.", ".mlp.fc2."),
    (r"\.ln\.a_2$", ".norm.weight"),
    (r"\.ln\.b_2$", ".norm.bias"),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]
# The release's ITM and VQA heads both call their last layer `proj`; which of ours it is depends on the head.
_PROJ = {"VQAHead": "head.classifier.", "ITMHead": "head.score."}
# The release's search supernet also holds an unused text-geometry projection; it has no counterpart here.
_DROPPED = re.compile(r"^linear_x_rel\.")


class ReleaseKeyError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0])


def release_key_to_ours(key: str, head_class: str) -> str:
    key = key[len("module."):] if key.startswith("module.") else key
    for pattern, repl in _COMPILED:
        key = pattern.sub(repl, key)
    if key.startswith("proj.") and head_class in _PROJ:
        key = _PROJ[head_class] + key[len("proj."):]
    return key


def convert_release_state_dict(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release's state dict (with or without `module.`) renamed to `net`'s names, checked key by key and shape by
    shape; any missing, unexpected or mis-shaped key is an error that lists them all."""
    head_class = type(getattr(net, "head", None)).__name__
    ours = net.state_dict()
    out, unexpected, shapes = {}, [], []
    for key, value in state_dict.items():
        if _DROPPED.match(key[len("module."):] if key.startswith("module.") else key):
            continue
        name = release_key_to_ours(key, head_class)
        if name not in ours:
            unexpected.append(key)
        elif tuple(ours[name].shape) != tuple(value.shape):
            shapes.append(f"{key}: checkpoint {tuple(value.shape)} vs network {tuple(ours[name].shape)}")
        else:
            out[name] = value
    missing = sorted(set(ours) - set(out) - {s.split(':')[0] for s in shapes})
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:20])}"
                         f"{' …' if len(unexpected) > 20 else ''}")
        if shapes:
            parts.append(f"shape mismatches {len(shapes)}: {'; '.join(shapes[:10])}")
        raise ReleaseKeyError("the release checkpoint does not fit this network (" + "; ".join(parts) + "). "
                              "Check --ARCH_PATH/--ARCH_EPOCH (the arch the checkpoint was trained with), the "
                              "hidden size, and the vocabulary/answer sizes of the data it was trained on.")
    return out


def load_release_state_dict(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a release state dict (keys as in reference_keys/, with or without `module.`) into `net`."""
    net.load_state_dict(convert_release_state_dict(net, state_dict), strict=True)
    return net
