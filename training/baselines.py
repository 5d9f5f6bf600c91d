"""Two baselines the fine-tuned model must beat, on the same normalised text and the same train split.

- KeywordRules: the keyword filter platforms already run (a label fires when one of its words appears).
- TfidfLogReg: character 1–3-gram TF-IDF + one logistic regression per output.
Both return (n, 5) scores in the model's output order (fraud-any, then the labels).
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from fanzha.models.labels import LABELS

KEYWORDS = {
    "fake_giveaway": "免费领 免费送 免费赠送 0元领 白送 送皮肤 领皮肤 签名照 亲签 粉丝群 后援会 幸运粉丝 中奖 抽中 恭喜 福利群 永久皮肤 点券".split(),
    "fee_demand": "激活费 认证费 验证费 保证金 押金 解冻费 手续费 邮费 运费 会员费 入会费 报名费 公证费 税费 通道费 先交 先付 缴纳".split(),
    "click_farming": "刷单 返利 返佣 佣金 做任务 派单 点赞赚 日结 垫付 一单一结 兼职 任务群".split(),
    "other_fraud": "公安 警察 网警 涉嫌 洗钱 安全账户 客服 退款 理赔 贷款 征信 借呗 百万保障 注销 冻结 班主任 验证码".split(),
}


class KeywordRules:
    def fit(self, texts: list[str], y: np.ndarray) -> KeywordRules:  # nothing to learn: same interface
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 1 + len(LABELS)), dtype=np.float32)
        for i, text in enumerate(texts):
            for k, label in enumerate(LABELS):
                out[i, 1 + k] = float(any(w in text for w in KEYWORDS[label]))
        out[:, 0] = out[:, 1:].max(axis=1)
        return out


class TfidfLogReg:
    def __init__(self, seed: int = 13) -> None:
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
        self.seed = seed
        self.models: list[LogisticRegression] = []

    def fit(self, texts: list[str], y: np.ndarray) -> TfidfLogReg:
        x = self.vectorizer.fit_transform(texts)
        self.models = [
            LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=self.seed).fit(
                x, y[:, k]
            )
            for k in range(y.shape[1])
        ]
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        x = self.vectorizer.transform(texts)
        return np.stack([m.predict_proba(x)[:, 1] for m in self.models], axis=1).astype(np.float32)
