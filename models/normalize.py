"""Evasion-robust normalisation that remembers where every character came from.

Scammers write 薇❤信, ＶＸ, 扣扣, ①②③④⑤, 加.群, jie冻 and zero-width characters so that keyword filters miss
them. The classifier and the evidence extractor both read the normalised text; every normalised character
keeps the span of ORIGINAL text it came from, so evidence can be highlighted where the user wrote it.

Steps, in order:
1. per character: NFKC (full-width → half-width, ① → 1, 𝟏 → 1), ASCII lower-casing, dingbat/keycap digits
   → digits, 🐧 → qq, ➕ → 加; zero-width, variation selectors, control characters and emoji dropped;
2. Traditional → Simplified (OpenCC t2s, positional so offsets survive);
3. decorative separators removed between CJK characters (加-微-信 → 加微信) and inside split-up numbers
   (1 2 3 4 5 6 7 → 1234567);
4. a lexicon of contact-word variants, homophones and pinyin spellings mapped to canonical words
   (薇信/V信/vx → 微信, 扣扣/企鹅 → qq, jie冻 → 解冻);
5. runs of spaces collapsed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

# --- step 1 tables ------------------------------------------------------------------------------
_DROP_CODEPOINTS = (
    set(range(0x200B, 0x2010))  # zero-width space/joiners, LRM/RLM
    | set(range(0x202A, 0x202F))  # bidi embedding controls
    | set(range(0x2060, 0x2070))  # word joiner, invisible operators
    | set(range(0xFE00, 0xFE10))  # variation selectors (emoji presentation)
    | {0xFEFF, 0x00AD, 0x034F, 0x180E, 0x20E3, 0x20DD, 0x3164, 0x115F, 0x1160}  # BOM, soft hyphen, keycap…
)
_DIGIT_RANGES = (0x2776, 0x2780, 0x278A)  # ❶-❿, ➀-➉, ➊-➓ : dingbat circled digits 1..10
_SPECIAL_CHARS = {"🐧": "qq", "➕": "加", "🔟": "10", "⓿": "0", "〇": "0"}
_SPECIAL_CHARS.update({chr(0x24F5 + i): str(i + 1) for i in range(9)})  # ⓵-⓽ double circled
_SPECIAL_CHARS.update({chr(0x1F100 + i): str(i) for i in range(1, 10)})  # 🄁-🄉 digit comma


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or cp in (0x2B50, 0x2B55, 0x3030, 0x303D, 0x3297, 0x3299)
    )


@functools.lru_cache(maxsize=65536)
def _map_char(ch: str) -> str:
    """The normalised replacement of one original character ('' drops it)."""
    if ch in _SPECIAL_CHARS:
        return _SPECIAL_CHARS[ch]
    cp = ord(ch)
    if cp in _DROP_CODEPOINTS:
        return ""
    for base in _DIGIT_RANGES:
        if base <= cp < base + 10:
            return str(cp - base + 1)
    if ch in "\n\t":
        return "\n" if ch == "\n" else " "
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return ""
    out = unicodedata.normalize("NFKC", ch)
    if _is_emoji(ch) and not (out != ch and out.isascii()):  # 🅅 → v is a letter in disguise, 🎁 is decoration
        return ""
    if out.isascii():
        out = out.lower()
    # NFKC turns some symbols into sequences with spaces (e.g. ㈠ → (一)); keep them, they are rare.
    return "".join(c for c in out if ord(c) not in _DROP_CODEPOINTS)


# --- step 2: Traditional → Simplified --------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc  # imported lazily: a C++ extension, ~10 ms

    return opencc.OpenCC("t2s")


def is_cjk(ch: str) -> bool:
    """A CJK ideograph (URO, extension A, compatibility, extensions B+)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F
    )


def _simplify_char(ch: str) -> str:
    if not is_cjk(ch):
        return ch
    out = _t2s().convert(ch)
    return out if len(out) == 1 else ch


# --- step 3: separators --------------------------------------------------------------------------
_SEPARATORS = " .·•・-_*|/\\~^`'\"#@+=…‧∙"  # not , : ; — after NFKC those are real Chinese punctuation
_CJK_SPLIT = re.compile(
    r"(?<=[\u3400-\u9fff\uf900-\ufaff])[" + re.escape(_SEPARATORS) + r"]{1,3}(?=[\u3400-\u9fff\uf900-\ufaff])"
)
# digits split by spaces/dashes: at least 3 groups and 5 digits (checked in _join_digits), so "3 元",
# "1 2 3" or "2 3" stay alone while "1 2 3 4 5 6 7 8" and "138-1234-5678" become one number
_DIGIT_SPLIT = re.compile(r"(?<![\d.])\d{1,4}(?:[ \-_*|·•]{1,2}\d{1,4}){2,}(?![\d])")


def _join_digits(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group())
    return digits if len(digits) >= 5 else m.group()


# --- step 4: variant lexicon (applied to lower-cased, simplified text) -----------------------------
_SEP = r"[\s.\-_*·]?"
_LEXICON: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), repl)
    for p, repl in [
        # WeChat
        (
            r"(?:[薇徽危嶶胃维唯]|微"
            + _SEP
            + r")信|(?<![a-z])v"
            + _SEP
            + r"信|(?<![a-z])(?:vx|wx|weixin|wechat|vchat)(?![a-z])|绿泡泡|微"
            + _SEP
            + r"x(?![a-z])|(?<![a-z])wei"
            + _SEP
            + r"信",
            "微信",
        ),
        # QQ and QQ groups
        (r"扣" + _SEP + r"扣|抠抠|寇寇|企鹅号|(?<![a-z])q" + _SEP + r"q(?![a-z])|(?<![a-z])qq号?码", "qq"),
        (r"(?<![a-z])(?:q|扣)" + _SEP + r"(?:群|裙)", "qq群"),
        (r"(?<=[加进入])裙", "群"),
        (r"[咖伽佳嘉](?=微信|qq|群|v|好友)", "加"),
        # pinyin or half-pinyin spellings of key words
        (r"jie" + _SEP + r"(?:冻|dong)|解" + _SEP + r"dong", "解冻"),
        (r"ji" + _SEP + r"活|激" + _SEP + r"huo|jihuo", "激活"),
        (r"bao" + _SEP + r"证金|保" + _SEP + r"zheng" + _SEP + r"金", "保证金"),
        (r"bao" + _SEP + r"证|保" + _SEP + r"zheng", "保证"),
        (r"shua" + _SEP + r"单|刷" + _SEP + r"dan|shuadan", "刷单"),
        (r"fan" + _SEP + r"(?:利|li)|返" + _SEP + r"li(?![a-z])|fanli", "返利"),
        (r"fan" + _SEP + r"佣|返" + _SEP + r"yong", "返佣"),
        (r"mian" + _SEP + r"费|免" + _SEP + r"fei|mianfei", "免费"),
        (r"zhuan" + _SEP + r"钱|赚" + _SEP + r"qian", "赚钱"),
        (r"ling" + _SEP + r"取|领" + _SEP + r"qu(?![a-z])", "领取"),
        (r"pi" + _SEP + r"肤|皮" + _SEP + r"fu(?![a-z])", "皮肤"),
        (r"dian" + _SEP + r"赞|点" + _SEP + r"zan", "点赞"),
        (r"dian" + _SEP + r"券|点" + _SEP + r"quan", "点券"),
        (r"手" + _SEP + r"xu" + _SEP + r"费|shouxufei", "手续费"),
        (r"ren" + _SEP + r"证|认" + _SEP + r"zheng", "认证"),
        (r"yong" + _SEP + r"金|佣" + _SEP + r"jin", "佣金"),
        (r"jian" + _SEP + r"职|兼" + _SEP + r"zhi", "兼职"),
        (r"hong" + _SEP + r"包|红" + _SEP + r"bao", "红包"),
        (r"zhuan" + _SEP + r"账|转" + _SEP + r"zhang", "转账"),
        (r"tui" + _SEP + r"款|退" + _SEP + r"kuan", "退款"),
        (r"fu" + _SEP + r"款|付" + _SEP + r"kuan", "付款"),
        (r"(?<![a-z])qun(?![a-z])", "群"),
    ]
]
_SPACES = re.compile(r"[ ]{2,}")


def has_readable_text(text: str) -> bool:
    """False when normalisation would leave nothing but whitespace (only emoji, zero-width, controls)."""
    return any(_map_char(ch).strip() for ch in text)


@dataclass(frozen=True)
class Normalized:
    """Normalised text plus, for every normalised character, the [start, end) span it came from."""

    original: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a [start, end) span of the normalised text onto the original text."""
        if not self.text or end <= start:
            pos = self.starts[start] if start < len(self.starts) else len(self.original)
            return pos, pos
        return self.starts[start], self.ends[end - 1]


class _Builder:
    """Accumulates (character, original span) triples; every step rewrites one into another."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, text: str, start: int, end: int) -> None:
        for ch in text:
            self.chars.append(ch)
            self.starts.append(start)
            self.ends.append(end)


def _rewrite(
    chars: list[str], starts: list[int], ends: list[int], pattern: re.Pattern[str], repl
) -> _Builder:
    """Apply a regex substitution to the character list; a replacement spans its whole match's origin."""
    text = "".join(chars)
    matches = list(pattern.finditer(text))
    out = _Builder()
    if not matches:  # the common case: keep the lists as they are
        out.chars, out.starts, out.ends = chars, starts, ends
        return out
    pos = 0
    for m in matches:
        a, b = m.span()
        for i in range(pos, a):
            out.add(chars[i], starts[i], ends[i])
        replacement = repl(m) if callable(repl) else repl
        if replacement and b > a:
            out.add(replacement, starts[a], ends[b - 1])
        pos = b
    for i in range(pos, len(chars)):
        out.add(chars[i], starts[i], ends[i])
    return out


def normalize(text: str) -> Normalized:
    """Normalise `text` for classification and evidence extraction (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    b = _Builder()
    for i, ch in enumerate(text):
        mapped = _map_char(ch)
        if mapped:
            b.add(mapped, i, i + 1)

    if any(is_cjk(c) for c in b.chars):
        joined = "".join(b.chars)
        simplified = _t2s().convert(joined)
        if len(simplified) == len(joined):
            b.chars = list(simplified)
        else:  # a phrase rule changed the length: fall back to character-wise conversion
            b.chars = [_simplify_char(c) for c in b.chars]

    b = _rewrite(b.chars, b.starts, b.ends, _CJK_SPLIT, "")
    b = _rewrite(b.chars, b.starts, b.ends, _DIGIT_SPLIT, _join_digits)
    for pattern, repl in _LEXICON:
        b = _rewrite(b.chars, b.starts, b.ends, pattern, repl)
    b = _rewrite(b.chars, b.starts, b.ends, _SPACES, " ")
    return Normalized(original=text, text="".join(b.chars), starts=tuple(b.starts), ends=tuple(b.ends))
