import random

import pytest

from fanzha.datasets.augment import PERTURBATIONS, augment
from fanzha.models.normalize import normalize

LURE = "恭喜你获得免费皮肤，加微信 abc123 领取，先交10元激活费，解冻后返利"


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_each_perturbation_changes_the_text(name) -> None:
    out = PERTURBATIONS[name](LURE, random.Random(1))
    assert out != LURE


@pytest.mark.parametrize("name", ["zero_width", "separators", "traditional", "emoji", "digits"])
def test_normalisation_undoes_surface_perturbations(name) -> None:
    out = PERTURBATIONS[name](LURE, random.Random(2))
    assert normalize(out).text.replace(" ", "") == normalize(LURE).text.replace(" ", "")


@pytest.mark.parametrize("name", ["homoglyph", "pinyin"])
def test_key_words_survive_lexical_perturbations(name) -> None:
    out = normalize(PERTURBATIONS[name](LURE, random.Random(3))).text
    for word in ("微信", "激活", "解冻"):
        assert word in out, (word, out)


def test_augment_is_seeded() -> None:
    assert augment(LURE, random.Random(5)) == augment(LURE, random.Random(5))
