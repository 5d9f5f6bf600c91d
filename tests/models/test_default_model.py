"""The committed default model: loads with no arguments and behaves on messages written for this test."""

import json
from pathlib import Path

import pytest

from fanzha.models import Detector
from fanzha.models.text import DEFAULT_MODEL_DIR

SCAMS = {
    "恭喜你被选为幸运粉丝！免费送偶像亲笔签名照，加粉丝QQ群 61730245 登记，只收15元邮费": {
        "fake_giveaway",
        "fee_demand",
    },
    "小学生也能做的兼职！给抖音视频点赞一个2元，日结，进任务群还有垫付大单": {"click_farming"},
    "你好，我是市公安局网警，你的账户涉嫌洗钱，马上把钱转到安全账户配合调查": {"other_fraud"},
}
BENIGN = [
    "提醒一下大家：凡是让你先交激活费才能领皮肤的都是骗子，官方活动不收任何费用！",
    "周六班级聚餐AA，每人45元，转给班长就行",
    "今晚八点直播间抽奖送周边，抽中的宝宝填地址就好，包邮不用付任何钱",
    "作业写完了吗？明天数学小测",
]


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.load()


def test_default_files_are_small_and_documented() -> None:
    for name in ("model.onnx", "tokenizer.json", "MODEL_CARD.md"):
        path = DEFAULT_MODEL_DIR / name
        assert path.is_file(), path
        assert path.stat().st_size <= 60 * 2**20, path
    parity = json.loads((DEFAULT_MODEL_DIR / "parity.json").read_text())
    assert (
        parity["passed"]
        and parity["fp32_vs_torch_max_abs_logit_diff"] <= 1e-4
        and parity["macro_f1_drop_points"] <= 0.5
    )


def test_parity_is_the_committed_models_own(detector) -> None:
    """parity.json was written by the export that wrote this model.onnx, not left over from an earlier one."""
    parity = json.loads((DEFAULT_MODEL_DIR / "parity.json").read_text())
    assert parity["version"] == detector.model_version == detector.classifier.version
    assert parity["size_mb_int8"] == round((DEFAULT_MODEL_DIR / "model.onnx").stat().st_size / 2**20, 1)
    assert parity.get("block_threshold") == detector.classifier.thresholds.get(
        "block"
    )  # tuned by that export, when it did


@pytest.mark.parametrize("text", sorted(SCAMS))
def test_scams_are_flagged_with_their_labels(detector, text) -> None:
    verdict = detector.classify_text(text)
    assert verdict.decision in ("review", "block"), verdict
    assert SCAMS[text] <= set(verdict.labels), verdict


@pytest.mark.parametrize("text", BENIGN)
def test_hard_negatives_pass(detector, text) -> None:
    assert detector.classify_text(text).decision == "pass"


def test_evasive_spelling_is_still_caught(detector) -> None:
    verdict = detector.classify_text("免fei领王者皮fu🎁 ➕薇❤信 ｗｚ８８６６ 先交ji活费⑩元")
    assert verdict.decision in ("review", "block") and "fake_giveaway" in verdict.labels
    assert any(e["kind"] == "wechat" for e in verdict.evidence)


def test_lure_at_the_end_of_a_long_post(detector) -> None:
    filler = "今天我们班去博物馆参观，看了很多青铜器和瓷器，老师讲解得很仔细，大家都做了笔记。" * 20
    lure = "最后说一句：想要免费皮肤的加QQ群 52817364，交10元激活费就发"
    assert detector.classify_text(filler).decision == "pass"
    assert detector.classify_text(filler + lure).decision in ("review", "block")


def test_model_version_is_reported(detector) -> None:
    assert detector.classify_text("你好").model_version.startswith("fanzha-text-")
    assert Path(DEFAULT_MODEL_DIR / "model.onnx").exists()
