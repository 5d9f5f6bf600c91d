"""The README's screenshots of the review console: docs/console_queue.png, docs/console_case.png and
docs/console_dashboard.png, taken with playwright in Debian's Chromium from a small demo platform.

    python bench/console_screenshots.py          # needs the dev extra (playwright) and `chromium`

The demo: a temporary SQLite database, a few authored lures reported by users and a few items decided
`review`, scored by the committed model; two moderator decisions and a ban, so the dashboard has something
to draw. Screenshots are reduced to a 256-colour palette to stay small.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from console import demo_platform

REPO = Path(__file__).resolve().parents[1]
KEY = "demo-key"
REPORTS = [
    ("恭喜你成为幸运粉丝！加QQ群 83726154 免费领签名照，先交29元激活费", "u1042", "说送签名照，让我交激活费"),
    ("免fei领王者皮fu🎁 ➕薇❤信 ｗｚ８８６６ 先交ji活费⑩元", "u2077", "加微信领皮肤要先交钱"),
    ("学生党在家也能做，给抖音视频点赞一单3元日结，进任务群 559021837 接垫付大单", "u3310", "刷单骗子"),
    ("我是网警，你的游戏账号涉嫌违规交易已被冻结，让爸妈扫码交解冻金", "u4188", "冒充警察"),
]
REVIEW = [
    ("后援会招新啦，入会费只要9.9元，送明星小卡", "u1042", "g88"),
    ("点券充值返利群，充100返150，名额有限", "u5521", "g88"),
    ("账号被限制了，联系客服处理解冻，需要保证金", "u6603", "g12"),
]


def build(tmp: Path):
    from fanzha.models import Detector
    from fanzha.platform import ItemRef, Scored

    platform = demo_platform(tmp, Detector.load(threads=2))
    ids = []
    for i, (text, account, reason) in enumerate(REPORTS):
        r = platform.report(f"reporter{i}", reason, "text", text=text, account_id=account, group_id="g88")
        ids.append("report:" + r.report["report_id"])
    for i, (text, account, group) in enumerate(REVIEW):
        [verdict] = platform.detector.classify_texts([text])
        verdict = dataclasses.replace(verdict, decision="review")
        platform.keep_for_review(
            Scored(ItemRef(id=f"m{i}", account_id=account, group_id=group), verdict), content=text
        )
    image = (REPO / "tests" / "fixtures" / "media" / "poster.png").read_bytes()
    platform.classify_media(image, ItemRef(id="poster-1", account_id="u1042"), expected="image")
    for case_id, decision, reason in (
        (ids[3], "confirm", "冒充警察索要解冻金"),
        (ids[2], "confirm", "刷单返利"),
    ):
        platform.claim(case_id, "alice")
        platform.decide(case_id, "alice", decision, reason)
    platform.dispose("account", "u3310", "ban", "alice", "刷单返利，多次被举报", duration_s=7 * 86400)
    return platform, ids


def main() -> int:
    from PIL import Image
    from playwright.sync_api import sync_playwright
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from fanzha.serving.console import create_app
    from fanzha.serving.console.auth import Auth
    from fanzha.serving.launch import asgi_in_thread

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium on PATH (apt-get install chromium fonts-noto-cjk)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="fanzha-screens-"))
    platform, ids = build(tmp)
    app = Starlette(routes=[Mount("/console", create_app(platform, Auth(keys=(KEY,), secret=b"d" * 32)))])
    shots = {
        "console_queue.png": "/queues?queue=reports",
        "console_case.png": f"/case/{quote(ids[0], safe='')}",
        "console_dashboard.png": "/dashboard",
    }
    with asgi_in_thread(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
        page = context.new_page()
        page.goto(url + "/console/login")
        page.fill("input[name=name]", "alice")
        page.fill("input[name=key]", KEY)
        page.click("#login-form button[type=submit]")
        for name, path in shots.items():
            page.goto(url + "/console" + path)
            page.wait_for_load_state("networkidle")
            out = REPO / "docs" / name
            page.screenshot(path=str(out))
            Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)
            print(f"{out.relative_to(REPO)}: {out.stat().st_size / 1024:.0f} KB")
        browser.close()
    platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
