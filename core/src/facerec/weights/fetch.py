"""Getting a card's files: from an installed Python package, the Hugging Face Hub (standard cache, honours
``HF_HUB_OFFLINE``) or a URL, each verified against its sha256; and ``--weights`` values resolved."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ..errors import WeightsError
from .catalog import WeightCard, WeightFile, card
from .loading import sha256


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def pull(name: str, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Fetch every file of card ``name`` into the Hugging Face cache (or find it in its installed
    Python package) and verify its sha256."""
    c = card(name)
    paths = []
    for f in c.files:
        if f.package:
            paths.append(package_file(c, f))
        elif f.hf_repo:
            paths.append(_pull_hf(c, f, f.hf_repo, cache_dir))
        elif f.url:
            paths.append(_pull_url(c, f, f.url, cache_dir))
        else:
            raise WeightsError(f"weights {c.name!r}: file {f.filename} has neither a package, an hf repo nor a url")
        if f.sha256 and (got := sha256(paths[-1])) != f.sha256.lower():
            fix = (
                f"reinstall it: pip install --force-reinstall {f.pip or f.package.partition(':')[0]}"
                if f.package
                else "corrupt or tampered download; delete it and pull again"
            )
            raise WeightsError(
                f"weights {c.name!r}: {paths[-1]} has sha256 {got[:16]}..., expected {f.sha256[:16]}... ({fix})"
            )
    return paths


def resolve(weights: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A ``--weights`` value as users give it: an existing file, or a registered card name whose
    (first) file is found (installed package) or pulled into the Hub cache, and verified. Unknown
    names fail with one line pointing at the card list."""
    return resolve_weights(weights, cache_dir).path


@attrs.frozen
class ResolvedWeights:
    """What a ``--weights`` value turned out to be: the file, its sha256, and the card if it named one."""

    path: Path
    sha256: str
    card: WeightCard | None = None

    def record(self) -> dict[str, str]:
        """The provenance a report or feature file keeps."""
        out = {"weights_file": str(self.path.resolve()), "weights_sha256": self.sha256}
        if self.card is not None:
            out["weights_card"] = self.card.name
        return out


def resolve_weights(weights: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> ResolvedWeights:
    """:func:`resolve`, keeping the card and the file's sha256 (verified against the card's)."""
    path = Path(weights)
    if path.is_file():
        return ResolvedWeights(path, sha256(path))
    from ..registry import components

    names = {c.name for c in components("weights")} | {c.qualified for c in components("weights")}
    if str(weights) not in names:
        hint = "no such file" if any(ch in str(weights) for ch in "/\\.") else "not a registered card either"
        raise WeightsError(
            f"--weights {str(weights)!r}: neither a file nor a registered card ({hint}; "
            f"`facerun weights list` shows the cards)"
        )
    c = card(str(weights))
    path = pull(str(weights), cache_dir)[0]
    return ResolvedWeights(path, c.files[0].sha256.lower() if c.files[0].sha256 else sha256(path), c)


def package_file(c: WeightCard, f: WeightFile) -> Path:
    """The card's file inside an installed Python package (found without importing the package)."""
    import importlib.util

    assert f.package is not None
    top, _, rel = f.package.partition(":")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    install = f"pip install {f.pip or top}"
    if spec is None:
        raise WeightsError(
            f"weights {c.name!r}: {f.filename} comes with the Python package {top!r}, which is not installed: {install}"
        )
    bases = list(spec.submodule_search_locations or ()) or ([str(Path(spec.origin).parent)] if spec.origin else [])
    for base in bases:
        path = Path(base, *rel.split("/"))
        if path.is_file():
            return path
    raise WeightsError(
        f"weights {c.name!r}: the installed package {top!r} has no {rel} (an incomplete "
        f"install?): pip install --force-reinstall {f.pip or top}"
    )


def _pull_hf(c: WeightCard, f: WeightFile, repo: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                repo_id=repo,
                filename=f.hf_filename or f.filename,
                revision=f.revision,
                cache_dir=None if cache_dir is None else str(cache_dir),
            )
        )
    except Exception as exc:  # LocalEntryNotFoundError, HTTP errors, ...
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (HF_HUB_OFFLINE is set and the file is not in the local cache)" if _offline() else ""
        raise WeightsError(
            f"weights {c.name!r}: cannot get {f.hf_repo}/{f.hf_filename or f.filename}{hint}: "
            f"{type(exc).__name__}: {why}"
        ) from None


def _pull_url(c: WeightCard, f: WeightFile, url: str, cache_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    root = Path(cache_dir) if cache_dir is not None else Path(HF_HUB_CACHE).parent / "facerec"
    target = root / c.name / f.filename
    if target.is_file():
        return target
    if _offline():
        raise WeightsError(f"weights {c.name!r}: {target} is not cached and HF_HUB_OFFLINE is set")
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as out:  # noqa: S310 (card URL)
            while block := r.read(1 << 20):
                out.write(block)
        os.replace(tmp, target)
    except OSError as exc:
        raise WeightsError(f"weights {c.name!r}: download of {f.url} failed: {exc}") from None
    return target
