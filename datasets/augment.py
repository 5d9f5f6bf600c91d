"""Evasion perturbations of authored text: training augmentation and the robustness evaluation.

Each perturbation rewrites an authored message the way scammers dodge keyword filters. They are applied
to text people wrote; they never create messages (the corpus is authored, not generated).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable

# contact words and their disguises
_CONTACT_VARIANTS = {
    "微信": ["薇信", "V信", "vx", "VX", "徽信", "微❤信", "wei信", "➕V"],
    "QQ": ["扣扣", "🐧", "Q", "企鹅", "扣"],
    "qq": ["扣扣", "🐧", "q", "企鹅"],
    "加群": ["加裙", "咖群", "+群"],
    "群": ["裙"],
}
# key words in pinyin or half pinyin (the way they appear in real evasive messages)
_PINYIN = {
    "解冻": ["jie冻", "解dong", "jiedong"],
    "激活": ["ji活", "激huo"],
    "保证金": ["bao证金", "保zheng金"],
    "刷单": ["shua单", "刷dan"],
    "返利": ["fan利", "返li"],
    "返佣": ["fan佣"],
    "免费": ["mian费", "免fei"],
    "领取": ["ling取", "领qu"],
    "皮肤": ["pi肤", "皮fu"],
    "点赞": ["dian赞", "点zan"],
    "佣金": ["yong金"],
    "兼职": ["jian职", "兼zhi"],
    "红包": ["hong包"],
    "转账": ["zhuan账", "转zhang"],
    "手续费": ["手xu费"],
    "认证": ["ren证"],
    "点券": ["dian券"],
    "赚钱": ["zhuan钱"],
    "微信": ["wei信"],
    "退款": ["tui款"],
}
_CIRCLED = "⓪①②③④⑤⑥⑦⑧⑨"
_FULLWIDTH = "０１２３４５６７８９"
_DINGBAT = "⓪❶❷❸❹❺❻❼❽❾"
_ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
_SEPARATORS = ["·", "-", " ", "*", "|", ".", "_", "/"]
_EMOJI = ["🔥", "💰", "🎁", "✨", "🌟", "❤️", "👉", "💯", "🎉", "⭐", "🥰", "😍", "💎", "🧧", "‼️", "🈶"]
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _replace_some(text: str, table: dict[str, list[str]], rng: random.Random, p: float = 0.8) -> str:
    keys = sorted((k for k in table if k in text), key=len, reverse=True)
    if not keys:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return pattern.sub(lambda m: rng.choice(table[m.group()]) if rng.random() < p else m.group(), text)


def homoglyph(text: str, rng: random.Random) -> str:
    """微信→薇信/V信/vx, QQ→扣扣/🐧, 群→裙."""
    return _replace_some(text, _CONTACT_VARIANTS, rng)


def pinyin(text: str, rng: random.Random) -> str:
    """Key words half spelled in pinyin: 解冻→jie冻, 刷单→shua单."""
    return _replace_some(text, _PINYIN, rng, p=0.9)


def digits(text: str, rng: random.Random) -> str:
    """Digits as circled, full-width or dingbat numbers, sometimes spaced out."""
    style = rng.choice([_CIRCLED, _FULLWIDTH, _DINGBAT, "keycap"])
    spaced = rng.random() < 0.4

    def convert(m: re.Match[str]) -> str:
        chars = [f"{d}\ufe0f\u20e3" if style == "keycap" else style[int(d)] for d in m.group()]
        return (" " if spaced else "").join(chars)

    return re.sub(r"\d+", convert, text)


def separators(text: str, rng: random.Random) -> str:
    """Separators between CJK characters of short runs (加·微·信, 激-活-费)."""
    sep = rng.choice(_SEPARATORS)
    out = []
    for i, ch in enumerate(text):
        out.append(ch)
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if _CJK.match(ch) and _CJK.match(nxt) and rng.random() < 0.5:
            out.append(sep)
    return "".join(out)


def zero_width(text: str, rng: random.Random) -> str:
    """Invisible characters between characters."""
    return "".join(ch + (rng.choice(_ZERO_WIDTH) if rng.random() < 0.3 else "") for ch in text)


@functools.lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")


def traditional(text: str, rng: random.Random) -> str:
    """Simplified → Traditional characters (OpenCC s2t)."""
    return _s2t().convert(text)


def emoji(text: str, rng: random.Random) -> str:
    """Emoji decoration around and inside the message."""
    out = [rng.choice(_EMOJI) * rng.randint(1, 3)]
    for ch in text:
        out.append(ch)
        if rng.random() < 0.12:
            out.append(rng.choice(_EMOJI))
    out.append(rng.choice(_EMOJI) * rng.randint(1, 2))
    return "".join(out)


PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "homoglyph": homoglyph,
    "pinyin": pinyin,
    "digits": digits,
    "separators": separators,
    "zero_width": zero_width,
    "traditional": traditional,
    "emoji": emoji,
}


def augment(text: str, rng: random.Random, max_perturbations: int = 2) -> str:
    """Apply 1..max_perturbations random perturbations (training augmentation)."""
    names = rng.sample(sorted(PERTURBATIONS), k=rng.randint(1, max_perturbations))
    for name in names:
        text = PERTURBATIONS[name](text, rng)
    return text
