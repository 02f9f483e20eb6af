"""The DCR network as a facerec Backbone: one trunk plus resolution-specific coupled branches.

Two branch designs:

* ``design="shared"`` (the repository's): ``branches[0]`` is one HR branch shared by every
  resolution, ``branches[k]`` the LR branch of ``scales[k-1]``; S+1 branches, checkpoint compatible.
* ``design="paired"`` (the paper's): one HR/LR branch pair per target resolution;
  ``branches[2k]`` is the HR branch and ``branches[2k+1]`` the LR branch of ``scales[k]``.

``forward`` returns the trunk embedding (the Backbone contract); :meth:`branch_embedder` gives the
coupled-branch embedders that the low-resolution protocols use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from facerec.api import Backbone, InputSpec, unwrap_state_dict
from facerec.errors import ParameterError, WeightsError
from torch import Tensor, nn

from .trunks import PaperTrunk, ResNetTrunk

PAPER = "Lu, Jiang, Kot: Deep Coupled ResNet for Low-Resolution Face Recognition, IEEE SPL 25(4), 2018"
DEFAULT_SCALES = (8, 12, 16, 20)
CASIA_CLASSES = 10575

Design = Literal["shared", "paired"]


class DCRBranch(nn.Module):
    """Coupled mapping: fc1 -> [L2 normalise] = branch embedding -> PReLU (one parameter) -> fc2."""

    def __init__(self, embedding_size: int, num_classes: int, normalized_embeddings: bool = True):
        super().__init__()
        self.normalized_embeddings = normalized_embeddings
        self.fc1 = nn.Linear(embedding_size, embedding_size)
        self.fc2 = nn.Linear(embedding_size, num_classes) if num_classes > 0 else None
        self.relu = nn.PReLU(1)

    def forward(self, trunk_embedding: Tensor, with_logits: bool = True) -> tuple[Tensor, Tensor | None]:
        emb = self.fc1(trunk_embedding)
        if self.normalized_embeddings:
            emb = F.normalize(emb, dim=1)
        logits = self.fc2(self.relu(emb)) if with_logits and self.fc2 is not None else None
        return emb, logits

    @torch.no_grad()
    def specialise(self, trunk_classifier: nn.Linear | None) -> None:
        """The original's ``--init-branches`` (SI): fc1 = identity, fc2 = a copy of the trunk classifier."""
        nn.init.eye_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)
        if trunk_classifier is not None and self.fc2 is not None:
            self.fc2.weight.copy_(trunk_classifier.weight)
            self.fc2.bias.copy_(trunk_classifier.bias)


class _DCR(Backbone):
    """Common machinery of the two registered DCR backbones (trunk class chosen by subclasses)."""

    paper: ClassVar[str] = PAPER
    recipe: ClassVar[str] = "dcr"
    input_spec = InputSpec(size=120, color="RGB", mean=0.5, std=0.5, template="dcr120")
    embedding_size = 512

    def _setup(
        self,
        trunk: nn.Module,
        *,
        num_classes: int,
        scales: Sequence[int],
        design: str,
        normalized_embeddings: bool,
        embedding_size: int,
        image_size: int,
    ) -> None:
        if design not in ("shared", "paired"):
            raise ParameterError(f"design must be 'shared' (repository) or 'paired' (paper), got {design!r}")
        scales = tuple(int(s) for s in scales)
        if not scales or any(s <= 0 or s >= image_size for s in scales):
            raise ParameterError(f"scales must be pixel sizes between 1 and image_size-1, got {scales}")
        self.trunk = trunk
        self.scales = scales
        self.design = design
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.input_spec = InputSpec(size=image_size, color="RGB", mean=0.5, std=0.5, template="dcr120")
        count = len(scales) + 1 if design == "shared" else 2 * len(scales)
        self.branches = nn.ModuleList(
            DCRBranch(embedding_size, num_classes, normalized_embeddings) for _ in range(count)
        )

    # -- forward paths ------------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor | Sequence[Tensor],
        *,
        head: Literal["embedding", "trunk", "branches"] = "embedding",
        index: Sequence[int] = (),
    ) -> Any:
        """One entry point (so DDP sees a single forward per step):

        * ``head="embedding"``: network input -> trunk embedding [B, D] (the Backbone contract);
        * ``head="trunk"``: network input -> (trunk embedding, trunk logits);
        * ``head="branches"``: ``x`` = one trunk-embedding batch per entry of ``index`` ->
          a list of (branch embedding, branch logits), branch ``index[j]`` applied to ``x[j]``.
        """
        if head == "embedding":
            return self.trunk(x)
        if head == "trunk":
            return self.trunk.embed_and_logits(x)
        if head == "branches":
            return [self.branches[i](e) for i, e in zip(index, x, strict=True)]
        raise ParameterError(f"unknown DCR head {head!r}")

    def trunk_outputs(self, x: Tensor, with_logits: bool = True) -> tuple[Tensor, Tensor | None]:
        return self.trunk.embed_and_logits(x, with_logits)

    def branch_outputs(
        self, trunk_embedding: Tensor, index: int, with_logits: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        return self.branches[index](trunk_embedding, with_logits)

    def forward_original(self, x: Tensor, idx: int = 0, trunk_only: bool = False) -> dict[str, Tensor | None]:
        """The original ``DCR.forward(img, idx, trunk_only)``, returning its dict of outputs."""
        emb, logits = self.trunk_outputs(x, with_logits=trunk_only)
        out: dict[str, Tensor | None] = {
            "trunk_embeddings": emb,
            "trunk_logits": logits,
            "branch_embeddings": None,
            "branch_logits": None,
        }
        if not trunk_only:
            out["branch_embeddings"], out["branch_logits"] = self.branch_outputs(emb, idx)
        return out

    # -- branch bookkeeping -------------------------------------------------------------------------
    def scale_position(self, scale: int) -> int:
        if scale not in self.scales:
            raise ParameterError(f"this DCR model has branches for {list(self.scales)} px, not {scale}")
        return self.scales.index(scale)

    def hr_branch(self, scale: int) -> int:
        """Index of the HR branch coupled to the LR branch of ``scale``."""
        pos = self.scale_position(scale)
        return 0 if self.design == "shared" else 2 * pos

    def lr_branch(self, scale: int) -> int:
        pos = self.scale_position(scale)
        return pos + 1 if self.design == "shared" else 2 * pos + 1

    def branch_embedder(self, index: int | None) -> Callable[[Tensor], Tensor]:
        """Canonical images -> embeddings through trunk + ``branches[index]`` (``None`` = the trunk)."""

        def embed(images: Tensor) -> Tensor:
            emb = self(self.input_spec.prepare(images))
            return emb if index is None else self.branches[index](emb, with_logits=False)[0]

        return embed

    @torch.no_grad()
    def specialise_branches(self) -> None:
        """SI initialisation of every branch from the trunk (fc1 = I, fc2 = trunk fc2)."""
        for branch in self.branches:
            branch.specialise(self.trunk.fc2)

    # -- original checkpoints -----------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
        """Original ``{'epoch','state_dict','criterion','optimizer','monitor'}`` (or a bare state
        dict) -> state dict; strips ``module.`` (DDP). The criterion centres are read separately
        with :func:`criterion_centers`."""
        try:
            state = unwrap_state_dict(checkpoint)
        except TypeError as exc:
            raise WeightsError(f"not a DCR checkpoint: {exc}") from None
        if not any(k.startswith("trunk.") for k in state):
            raise WeightsError("not a DCR checkpoint: no 'trunk.*' keys in its state_dict")
        return state


def criterion_centers(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The class centres stored in an original checkpoint's ``criterion`` entry.

    Trunk-stage files hold ``center.centers`` [C, D]; branch-stage files ``centers.{i}.centers``.
    Returns ``{"trunk": ...}`` or ``{"0": ..., "1": ...}`` (``module.`` prefixes stripped)."""
    crit = checkpoint.get("criterion") if isinstance(checkpoint, Mapping) else None
    if not isinstance(crit, Mapping):
        raise WeightsError("checkpoint has no 'criterion' state (class centres)")
    state = unwrap_state_dict(crit, key="__none__")
    out = {}
    for key, value in state.items():
        if key == "center.centers":
            out["trunk"] = value
        elif key.startswith("centers.") and key.endswith(".centers"):
            out[key.split(".")[1]] = value
        else:
            raise WeightsError(f"unexpected key {key!r} in the checkpoint's criterion state")
    if not out:
        raise WeightsError("the checkpoint's criterion state holds no centres")
    return out


class DCR(_DCR):
    """DCR with the repository's trunk: BasicBlock ResNet [1,2,5,3], 512-d, coupled branches."""

    def __init__(
        self,
        num_classes: int = CASIA_CLASSES,
        scales: Sequence[int] = DEFAULT_SCALES,
        design: Design = "shared",
        normalized_embeddings: bool = True,
        layers: Sequence[int] = (1, 2, 5, 3),
        embedding_size: int = 512,
        image_size: int = 120,
    ):
        super().__init__()
        trunk = ResNetTrunk(layers, embedding_size, num_classes, normalized_embeddings)
        self._setup(
            trunk,
            num_classes=num_classes,
            scales=scales,
            design=design,
            normalized_embeddings=normalized_embeddings,
            embedding_size=embedding_size,
            image_size=image_size,
        )


class DCRPaper(_DCR):
    """DCR with the paper-like trunk (PReLU stages; ``batch_norm=False`` is the paper's no-BN net)."""

    def __init__(
        self,
        num_classes: int = CASIA_CLASSES,
        scales: Sequence[int] = DEFAULT_SCALES,
        design: Design = "shared",
        normalized_embeddings: bool = True,
        batch_norm: bool = True,
        layers: Sequence[int] = (1, 2, 5, 3),
        embedding_size: int = 512,
        image_size: int = 120,
    ):
        super().__init__()
        trunk = PaperTrunk(layers, embedding_size, num_classes, normalized_embeddings, batch_norm)
        self._setup(
            trunk,
            num_classes=num_classes,
            scales=scales,
            design=design,
            normalized_embeddings=normalized_embeddings,
            embedding_size=embedding_size,
            image_size=image_size,
        )
