"""Where a trained model comes from: an fgvc checkpoint, a hub folder, a Hugging Face Hub id, an ONNX file.

``read_model_file(source)`` gives the checkpoint dict (``config``, ``model``, ``classes``, ...) of a
``.pt`` checkpoint or of a folder written by ``fgvc export --format hub`` (``model.safetensors`` +
``config.json``), local or ``hf://owner/name[@revision]`` through ``huggingface_hub``'s cache
(``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` apply as for any hub model). A folder's architecture comes from its
config and its weights from safetensors: reading it runs no code. ``.onnx`` files are not read here:
they hold a graph, not a state dict (``fgvc.deploy.onnx_model``).
"""

from __future__ import annotations

import json
from pathlib import Path

from fgvc.checkpoint import load_checkpoint
from fgvc.errors import FgvcError

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
OCCURRENCES = "occurrences.safetensors"  # where training saw each class (--region); only when known
FILES = (WEIGHTS, CONFIG, CARD, OCCURRENCES)
FORMAT = "fgvc-hub/1"
PREFIX = "hf://"


def is_onnx(source: str | Path) -> bool:
    return str(source).lower().endswith(".onnx")


def is_hub_source(source: str | Path) -> bool:
    """``hf://owner/name`` or a folder holding a hub export."""
    text = str(source)
    return text.startswith(PREFIX) or (Path(text).is_dir() and (Path(text) / CONFIG).is_file())


def resolve(source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The local folder of ``source``: itself, or ``hf://owner/name[@revision]`` from the hub cache."""
    text = str(source)
    if not text.startswith(PREFIX):
        folder = Path(text)
        missing = [f for f in (WEIGHTS, CONFIG) if not (folder / f).is_file()]
        if missing:
            raise FgvcError(f"{folder}: not an fgvc model folder (no {', '.join(missing)}); write one with "
                            "`fgvc export --checkpoint CKPT --format hub --out DIR`")
        return folder
    repo_id, _, revision = text[len(PREFIX):].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise FgvcError(f"{text}: expected hf://owner/name or hf://owner/name@revision")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FgvcError(f"{text}: loading from the Hugging Face Hub needs huggingface_hub "
                        "(pip install 'fgvc[hub]')") from None
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = snapshot_download(repo_id, revision=revision or None, allow_patterns=list(FILES),
                                   cache_dir=str(cache_dir) if cache_dir else None)
    except LocalEntryNotFoundError:
        raise FgvcError(f"{text}: not in the local Hugging Face cache and the Hub could not be reached "
                        "(offline? HF_HUB_OFFLINE and HF_HUB_CACHE say where to look)") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise FgvcError(f"{text}: no such model repository or revision on the Hub, or no access to it "
                        f"({type(exc).__name__}; private models need `hf auth login`)") from None
    except Exception as exc:  # network and HTTP errors: the hub's first line says which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FgvcError(f"{text}: could not get it from the Hugging Face Hub ({first})") from None
    return resolve(folder)


def read_folder(source: str | Path, cache_dir: str | Path | None = None) -> dict:
    """A hub folder (or ``hf://`` id) as the checkpoint it was written from: ``config``, ``model``,
    ``classes``, ``taxonomy``, ``dataset``, ``groups``, ``occurrences`` — what ``model_from_checkpoint``
    and prediction read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve(source, cache_dir)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FgvcError(f"{folder / CONFIG}: not readable JSON ({exc})") from None
    if config.get("format") != FORMAT:
        raise FgvcError(f"{folder / CONFIG}: format {config.get('format')!r}, expected {FORMAT!r} "
                        "(written by `fgvc export --format hub`)")
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise FgvcError(f"{folder / WEIGHTS}: not a readable safetensors file ({exc})") from None
    occurrences = None
    if (folder / OCCURRENCES).is_file():
        try:
            occurrences = load_file(str(folder / OCCURRENCES))
        except (SafetensorError, OSError) as exc:
            raise FgvcError(f"{folder / OCCURRENCES}: not a readable safetensors file ({exc})") from None
    return {"config": config["config"], "model": state, "occurrences": occurrences,
            "classes": config["classes"], "taxonomy": config.get("taxonomy") or {},
            "dataset": config.get("dataset"), "groups": config.get("groups"),
            "hub": {"folder": str(folder), "results": config.get("results")}}




def read_model_file(source: str | Path) -> dict:
    """The checkpoint dict of an fgvc checkpoint, a hub folder or an ``hf://`` id."""
    return read_folder(source) if is_hub_source(source) else load_checkpoint(source)


def read_image_model(source: str | Path) -> dict:
    """``read_model_file``, refusing what is not an image model (a PriorsNet prior, released weights)."""
    ckpt = read_model_file(source)
    if ckpt.get("kind") == "priors_net":
        raise FgvcError(f"{source}: a PriorsNet location prior, not an image model; give the image model "
                        "as the checkpoint and this file as its prior (--prior)")
    if "config" not in ckpt or "model" not in ckpt:
        raise FgvcError(f"{source}: not an fgvc checkpoint (no config/model); convert released weights "
                        "with `fgvc import-checkpoint` first")
    return ckpt
