"""StudyDataset samples, seeded augmentations, and collation into a Batch with presence masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medclr.config import AugmentConfig
from medclr.data.cache import StudyCache, build_cache
from medclr.data.collate import Collator, ReportTokenizer
from medclr.data.dataset import StudyDataset
from medclr.data.manifest import read_manifest, write_manifest
from medclr.data.transforms import Augmenter, sample_sentences
from medclr.types import Geometry, TokenizedText
from tests.data.test_cache import SETTINGS, small_manifest  # noqa: F401 - fixture
from tests.models.conftest import tiny_bert_dir, tiny_llama_dir  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def cache(small_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> StudyCache:  # noqa: F811
    m = read_manifest(small_manifest)
    m.frame.loc[0, "report"] = None  # one study without a report
    path = tmp_path_factory.mktemp("ds") / "m.parquet"
    write_manifest(m, path)
    return build_cache(path, SETTINGS, path.parent, workers=1, progress=False)


def _augmenter(seed: int = 0) -> Augmenter:
    return Augmenter(AugmentConfig(cxr_prob=1.0), SETTINGS.image_size, SETTINGS.ecg_fs, seed)


def test_samples_hold_present_modalities_only(cache: StudyCache) -> None:
    ds = StudyDataset(cache, None, ["cxr", "ecg", "report"])
    first, second = ds[0], ds[1]
    assert "report" not in first and isinstance(second["report"], str)
    assert first["cxr"].shape == (1, 32, 32) and first["cxr"].dtype == torch.float32
    assert float(first["cxr"].min()) >= 0.0 and float(first["cxr"].max()) <= 1.0
    assert first["ecg"].shape == (12, 500)
    assert isinstance(first["cxr_geometry"], Geometry) and first["cxr_geometry"].output_size == (32, 32)
    assert first["labels"].shape == (len(cache.labels),)
    only_ecg = StudyDataset(cache, None, ["ecg"])[0]
    assert "cxr" not in only_ecg and "report" not in only_ecg
    assert ds.present("report")[0] == np.False_ and ds.present("report")[1:].all()


def test_augmentations_depend_only_on_seed_epoch_and_row(cache: StudyCache) -> None:
    a = StudyDataset(cache, None, ["cxr", "ecg", "report"], augment=_augmenter())
    b = StudyDataset(cache, None, ["cxr", "ecg", "report"], augment=_augmenter())
    plain = StudyDataset(cache, None, ["cxr", "ecg"])
    _ = b[3]  # a different access order must not matter
    for key in ("cxr", "ecg"):
        assert torch.equal(a[2][key], b[2][key])  # type: ignore[literal-required]
        assert not torch.equal(a[2][key], plain[2][key])  # type: ignore[literal-required]
    assert "cxr_geometry" not in a[2]  # an augmented image is off the cached grid
    assert torch.equal(a[0, 2]["cxr"], a[2]["cxr"])  # a plain index is epoch 0
    assert not torch.equal(a[2]["cxr"], b[1, 2]["cxr"])
    assert torch.equal(a[1, 2]["cxr"], b[1, 2]["cxr"])


def test_sentence_sampling_keeps_order_and_at_least_one_sentence() -> None:
    text = "One. Two. Three. Four."
    rng = np.random.RandomState(0)
    for _ in range(20):
        kept = sample_sentences(text, 0.3, rng).split(" ")
        assert kept and kept == sorted(kept, key=text.split(" ").index)


def test_collate_pads_missing_rows_and_marks_presence(cache: StudyCache, tiny_bert_dir: Path) -> None:  # noqa: F811
    from medclr.models.encoders.report import TextConfig

    encoder = TextConfig(model=str(tiny_bert_dir), max_length=16).build()
    tokenize = ReportTokenizer.from_encoder(encoder)
    ds = StudyDataset(cache, None, ["cxr", "ecg", "report"])
    batch = Collator(["cxr", "ecg", "report"], tokenize)([ds[i] for i in range(4)])
    assert batch.size == 4 and batch.ids[0] == ds.ids[0]
    assert batch.present["report"].tolist() == [False, True, True, True]
    assert batch.present["cxr"].all() and batch.inputs["cxr"].shape == (4, 1, 32, 32)  # type: ignore[union-attr]
    text = batch.inputs["report"]
    assert isinstance(text, TokenizedText)
    expected = encoder.tokenize(["", *[ds[i]["report"] for i in range(1, 4)]])
    assert torch.equal(text.input_ids, expected.input_ids)
    assert batch.labels is not None and batch.labels.shape == (4, len(cache.labels))


def test_sentence_ids_follow_the_character_offsets() -> None:
    from medclr.data.collate import sentence_ids

    text = "Mild cardiomegaly. No effusion!  Stable?"
    offsets = [(0, 0), (0, 4), (5, 17), (17, 18), (19, 21), (22, 30), (30, 31), (33, 39), (39, 40), (0, 0)]
    assert sentence_ids(text, offsets) == [-1, 0, 0, 0, 1, 1, 1, 2, 2, -1]
    assert sentence_ids("", [(0, 0), (0, 0)]) == [0, 0]  # no word at all: the special tokens are the sentence


def test_collated_sentence_ids_match_the_tower(tiny_llama_dir: Path) -> None:  # noqa: F811
    from medclr.models.encoders.report import TextConfig

    encoder = TextConfig(model=str(tiny_llama_dir), max_length=8, token_units="sentences", append_eos=True).build()
    tokenize = ReportTokenizer.from_encoder(encoder)
    texts = ["Mild cardiomegaly. No effusion. Stable lines and tubes.", "Clear."]
    text = tokenize(texts)
    assert text.sentence_ids is not None and text.input_ids.shape == text.sentence_ids.shape
    assert torch.equal(text.sentence_ids, encoder.tokenize(texts).sentence_ids)
    real = text.attention_mask.bool()
    assert (text.sentence_ids[~real] == -1).all() and text.sentence_ids[0, -1] == -1  # padding and the EOS
    assert text.sentence_ids[0].max() >= 1 and text.sentence_ids[1].max() == 0  # truncated at 8 tokens
    moved = text.select(torch.tensor([1])).to("cpu")
    assert moved.sentence_ids is not None and torch.equal(moved.sentence_ids, text.sentence_ids[1:])
