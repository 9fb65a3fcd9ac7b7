from __future__ import annotations

import pytest

from medclr.registry import Registry


def test_register_get_and_list() -> None:
    reg: Registry[type] = Registry("loss")

    @reg.register("convirt")
    class Convirt: ...

    @reg.register("gram")
    class Gram: ...

    assert reg.get("convirt") is Convirt
    assert reg.names() == ["convirt", "gram"] == list(reg)
    assert "gram" in reg and "clip" not in reg and len(reg) == 2


def test_duplicate_name_is_rejected() -> None:
    reg: Registry[int] = Registry("pooler")
    reg.register("mean")(1)
    with pytest.raises(ValueError, match="pooler 'mean' is already registered"):
        reg.register("mean")(2)
    assert reg.get("mean") == 1


def test_unknown_name_lists_valid_names() -> None:
    reg: Registry[int] = Registry("encoder")
    reg.register("vit")(1)
    reg.register("densenet121")(2)
    with pytest.raises(KeyError, match="unknown encoder 'resnet'; valid names: densenet121, vit"):
        reg.get("resnet")
