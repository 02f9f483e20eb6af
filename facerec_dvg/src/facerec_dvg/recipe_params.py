"""``--param recipe.*`` of the dvg recipe: one typed field each, with its quick and paper defaults.

``facerun info recipe dvg`` lists them; core checks names, types and ranges before any work
(:func:`facerec.recipes.knob`), the class itself what needs the registry (the pretraining head, the
nuisance preset).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import facerec
from facerec.errors import FacerecError, ParameterError
from facerec.recipes import knob


@attrs.frozen
class DvgParams:
    """``--param recipe.*`` of the dvg recipe. The quick preset is the paper's setting in miniature: a face
    model pretrained on synthetic faces, small generator and fine-tuning runs, a larger contrastive weight
    (why: the plugin README); the paper preset has the released sizes."""

    pretrained: str | None = knob(
        None,
        help="released backbone weights (e.g. LightCNN_29Layers_V2_checkpoint."
        "pth.tar); else the face model is pretrained here",
    )
    pretrain_ids: int = knob(
        300, paper=10000, low=1, help="synthetic VIS identities the face model learns from (MS-Celeb-1M's role)"
    )
    pretrain_per_id: int = knob(20, low=1, help="images per pretraining identity")
    pretrain_steps: int = knob(900, paper=20000, low=1, help="face-model pretraining steps (Adam, cosine)")
    pretrain_lr: float = knob(2e-3, paper=1e-3, low=0, help="face-model pretraining lr")
    pretrain_head: str | None = knob(
        "norm-softmax",
        paper=None,
        help="pretraining classifier, thrown away afterwards as the released LightCNN's fc2 is (none: the run's head)",
    )
    sampler_steps: int = knob(
        200, paper=20000, low=0, help="identity-sampler training steps (0: the released sampler stays as it is)"
    )
    generator_steps: int = knob(350, paper=60000, low=1, help="dual-generator training steps")
    generator_batch: int = knob(8, low=1, help="paired images per generator step")
    num_pairs: int = knob(512, paper=100000, low=1, help="generated NIR/VIS pairs of new identities")
    batch_size: int = knob(
        32, paper=64, low=1, help="real images per fine-tuning step (+ as many generated pairs in stage II)"
    )
    stage1_steps: int = knob(100, paper=4000, low=1, help="fine-tuning stage I steps (head only)")
    stage2_steps: int = knob(100, paper=24000, low=1, help="fine-tuning stage II steps (all layers)")
    finetune_lr: float = knob(1e-3, low=0, help="fine-tuning lr (the paper's)")
    contrastive_weight: float = knob(
        1.0, paper=0.001, low=0, help="weight of the contrastive loss on generated pairs (paper 0.001)"
    )
    seeds: int = knob(1, low=1, help="fine-tunings per arm (mean ± std over seeds)")
    write_generated: Literal["lmdb", "folder", "list", "none"] | None = knob(
        "lmdb", help="where the generated pairs are written: lmdb, folder, list or none"
    )
    # "controlled" is CASIA NIR-VIS 2.0's capture (aligned, near-frontal, plain backgrounds), "default"
    # the wild renderer; a dict sets the renderer's nuisance fields one by one
    nuisance: str | dict[str, Any] | None = knob(
        "controlled",
        paper="default",
        help="how much the synthetic faces vary (pretraining, paired set, protocol): controlled or default",
    )

    def __attrs_post_init__(self) -> None:
        if self.write_generated is None:  # `--param recipe.write_generated=none` parses as None
            object.__setattr__(self, "write_generated", "none")
        if self.pretrain_head is not None:
            try:  # the registry's own lookup: close matches, dist:name, duplicates
                facerec.registry.find("head", self.pretrain_head)
            except FacerecError as exc:
                raise ParameterError(f"recipe.pretrain_head: {exc}") from None
        from facerec.data.synthetic import resolve_nuisance

        resolve_nuisance(self.nuisance, "recipe.nuisance")  # an unknown preset fails before any work


__all__ = ["DvgParams"]
