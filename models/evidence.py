"""Evidence: the handles, links, amounts and scam terms a moderator needs to see, with ORIGINAL-text spans.

Extraction runs on the normalised text (so 薇❤信 ａｂｃ１２３ is found as a WeChat ID) and every span is mapped
back to the text the user wrote. Evidence explains a verdict; it never decides one.
"""

from __future__ import annotations

import re

from .normalize import Normalized, normalize
from .verdict import Evidence

# every evidence kind, defined here once: found in text …
TEXT_KINDS = ("qq", "qq_group", "wechat", "phone", "url", "amount", "fee_term", "giveaway_term", "task_term")
# … and read from QR codes on pictures (detector.py): a group-chat invite, or any other payload
QR_KINDS = ("qr", "qr_group_invite")
KINDS = TEXT_KINDS + QR_KINDS
# the kinds that name a contact handle a lure pushes (the platform's risk state links accounts through them)
HANDLE_KINDS = ("qq", "qq_group", "wechat", "phone", "url", *QR_KINDS)

# QR payloads that open a group chat (QQ group / WeChat group / QQ add-friend links): lures move victims there
_INVITE_HOSTS = ("qm.qq.com", "jq.qq.com", "qun.qq.com", "weixin.qq.com/g/", "u.wechat.com", "group_code=")


def qr_kind(payload: str) -> str:
    """The evidence kind of a QR payload: `qr_group_invite` for a QQ/WeChat group link, else `qr`."""
    low = payload.lower()
    return "qr_group_invite" if any(host in low for host in _INVITE_HOSTS) else "qr"


_FEE_TERMS = (
    "激活费 认证费 验证费 保证金 押金 解冻费 解冻金 手续费 服务费 邮费 运费 会员费 入会费 报名费 公证费 税费 个人所得税 "
    "通道费 刷流水 流水 解封费 审核费 开通费 材料费 工本费 转账 先付 垫付 预付 充值 缴纳 交钱 付款 扫码支付 可退还 全额退还 双倍返还"
).split()
_GIVEAWAY_TERMS = (
    "免费领取 免费领 免费送 免费赠送 0元领 零元领 白送 白嫖 送皮肤 领皮肤 免费皮肤 永久皮肤 签名照 亲签 签名 周边 粉丝群 后援会 "
    "幸运粉丝 抽中 中奖 恭喜 福利 抽奖 大礼包 点券 钻石 金币 代金券 名额有限 先到先得 限时"
).split()
_TASK_TERMS = (
    "刷单 返利 返佣 佣金 做任务 派单 接单 点赞 关注 评论 日结 秒结 兼职 垫付 提现 任务群 导师 接待员 打字员 抖音点赞 一单一结"
).split()


def _alternation(words: tuple[str, ...] | list[str]) -> re.Pattern[str]:
    # longest first so 免费领取 wins over 免费领
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))


_TERM_PATTERNS = {
    "fee_term": _alternation(_FEE_TERMS),
    "giveaway_term": _alternation(_GIVEAWAY_TERMS),
    "task_term": _alternation(_TASK_TERMS),
}

# numbers: a keyword context within a few characters decides which kind of handle a digit run is
_QQ_GROUP = re.compile(
    r"(?:qq群|群号|群聊|进群|加群|入群|粉丝群|后援会|福利群|任务群)[^\d\n]{0,6}?(\d{6,11})(?!\d)"
)
_QQ = re.compile(r"(?:qq|加q|q号)[^\d\n]{0,6}?([1-9]\d{4,10})(?!\d)")
_WECHAT = re.compile(r"(?:微信号?|加微)[^a-z\d\n]{0,4}?([a-z][a-z\d_\-]{5,19}|1[3-9]\d{9})(?![a-z\d_\-])")
_PHONE = re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d{9})(?!\d)")
_URL = re.compile(
    r"(?:https?://|www\.)[^\s\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]+"
    r"|(?<![a-z\d@.])(?:[a-z\d][a-z\d\-]{0,62}\.)+(?:cn|com|net|org|top|xyz|vip|cc|me|info|site|app|io|ly|link|club|shop|tk|ml|tv|hk|tw)(?:/[^\s\u3000-\u303f\u4e00-\u9fff]*)?(?![a-z\d])"
)
_AMOUNT = re.compile(
    r"(?:[¥￥$]|rmb|人民币)\s?\d+(?:\.\d+)?(?:万|千|w|k)?"
    r"|\d+(?:\.\d+)?\s?(?:万|千|w|k)?\s?(?:元|块钱|块|rmb|人民币|r(?![a-z])|米(?=[,，。!！\s]|$)|新台币|台币|港币|港元)"
)


def extract(text: str | Normalized) -> list[Evidence]:
    """All evidence in `text` (a str, or an already normalised text), sorted by original position."""
    norm = text if isinstance(text, Normalized) else normalize(text)
    found: list[Evidence] = []
    taken: set[tuple[int, int]] = set()  # normalised spans already claimed by a more specific kind

    def add(kind: str, value: str, a: int, b: int) -> None:
        if (a, b) in taken:
            return
        taken.add((a, b))
        start, end = norm.to_original(a, b)
        found.append(Evidence(kind, value, start, end, norm.original[start:end]))

    t = norm.text
    for m in _URL.finditer(t):
        add("url", m.group(), *m.span())
    for kind, pattern in (("qq_group", _QQ_GROUP), ("qq", _QQ), ("wechat", _WECHAT), ("phone", _PHONE)):
        for m in pattern.finditer(t):
            a, b = m.span(1)
            if any(
                e.kind == "url"
                and norm.to_original(a, b)[0] >= e.start
                and norm.to_original(a, b)[1] <= e.end
                for e in found
            ):
                continue  # digits inside a link are part of the link
            add(kind, m.group(1), a, b)
    for m in _AMOUNT.finditer(t):
        add("amount", m.group().strip(), *m.span())
    for kind, pattern in _TERM_PATTERNS.items():
        for m in pattern.finditer(t):
            add(kind, m.group(), *m.span())
    found.sort(key=lambda e: (e.start, e.end, e.kind))
    return found
