"""Settings of the network (spec §1–§3); each default is the release's value, named after the release key it replaces."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    hidden_size: int = 512          # HSIZE: 512 when training, 256 while searching
    dropout: float = 0.1            # DROPOUT_R
    word_embed_size: int = 300      # WORD_EMBED_SIZE (GloVe width)
    feat_size: int = 2048           # FRCNFEAT_SIZE (bottom-up region feature width)
    use_box_feature: bool = False   # BBOX_FEATURE: concat Linear(5→box_feat_size)(box) to each region
    box_feat_size: int = 2048       # BBOXFEAT_EMB_SIZE
    rel_size: int = 64              # REL_SIZE: width of the projected pair geometry
    flat_mlp_size: int = 512        # ATTFLAT_MLP_SIZE
    ops_residual: bool = True       # OPS_RESIDUAL: s + f(s)
    ops_norm: bool = True           # OPS_NORM: LayerNorm after the residual
    vgd_score_loss: str = "kld"     # VGD score loss: 'kld' (release) or 'bce'; decides log-softmax in the head
    vgd_box_weight: float = 0.5     # LOSS_LAMBDA
    itm_loss: str = "bce"           # ITM loss: 'bce' (release, positive counted twice) or 'margin'
    itm_margin: float = 0.2         # margin of the 'margin' ITM loss

    def validate(self) -> None:
        if self.hidden_size <= 0:
            raise ValueError(f"model.hidden_size must be positive, got {self.hidden_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.vgd_score_loss not in ("kld", "bce"):
            raise ValueError(f"model.vgd_score_loss must be 'kld' or 'bce', got {self.vgd_score_loss!r}")
        if self.itm_loss not in ("bce", "margin"):
            raise ValueError(f"model.itm_loss must be 'bce' or 'margin', got {self.itm_loss!r}")
