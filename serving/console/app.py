"""The review console 审核台: a Starlette app the service mounts at /console (serving/service.py).

Pages (paths relative to the mount):

    GET  /                         → the queues
    GET  /login   POST /login   POST /logout
    GET  /queues?queue=reports&status=&label=&kind=&claimed=&account_id=&group_id=&offset=
    GET  /case/{case_id}           text with evidence highlighted, image with OCR/QR overlay (blurred until
                                   clicked), video timeline, scores, account/group risk, cluster, history
    POST /case/{case_id}/claim   POST /case/{case_id}/release   POST /case/{case_id}/decide
    GET  /media/{case_id}/{name}   a kept image or keyframe
    GET  /account/{id}   GET /group/{id}          risk, actions with delivery status, disposal forms
    POST /dispose   POST /actions/{action_id}/lift   GET /actions
    GET  /dashboard   GET /audit   GET /audit.csv
    GET  /static/{file}            our own CSS and JS (no CDN)

Every page goes through `Guard` (who is it, CSRF on every POST, security headers) and calls only the Platform
facade's console methods (docs/console_contract.md). fanzha's errors become pages: NotFound a 404, Conflict (a
stale or foreign claim) a 409, InputError a 400, each saying what happened in Chinese and English.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fanzha.models.errors import Conflict, FanzhaError, InputError, NotFound

from ..gate import replay
from . import charts, csrf, pages
from .auth import COOKIE, MODERATOR_ID, SESSION_TTL_S, Auth, Session

log = logging.getLogger("fanzha.console")
HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024  # every console form is a few fields; the gate applies the same limit
PAGE_SIZE = 50
PUBLIC = ("/login", "/static/")  # reachable without a session: the login form and our CSS/JS, nothing else


def current_service_platform():
    """The Platform of the BentoML service instance serving this worker (set before the first request)."""
    import bentoml

    service = bentoml.get_current_service()
    if service is None:
        raise RuntimeError("the console needs the Fanzha service (or a platform passed to create_app)")
    return service.platform


class Console:
    """The pages. `platform`: a fanzha.platform.Platform, or a callable returning one (looked up per request:
    the service's instance exists only once BentoML has started the worker)."""

    def __init__(self, platform, auth: Auth) -> None:
        self._platform = platform
        self.auth = auth
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.globals.update(
            LABELS=pages.LABELS,
            QUEUES=pages.QUEUES,
            DECISIONS=pages.DECISIONS,
            ACCOUNT_ACTIONS=pages.ACCOUNT_ACTIONS,
            GROUP_ACTIONS=pages.GROUP_ACTIONS,
            DURATIONS=pages.DURATIONS,
            KINDS=pages.KINDS,
        )
        env.filters.update(
            when=pages.when,
            ago=pages.ago,
            score=pages.score,
            label=pages.label_name,
            duration=pages.duration,
            highlight=pages.highlight,
            overlay=pages.overlay,
            q=lambda v: quote(str(v), safe=""),
        )

    @property
    def platform(self):
        return self._platform() if callable(self._platform) else self._platform

    async def call(self, method: str, *args, **kwargs):
        """A facade method, off the event loop (the platform's database calls block)."""
        return await run_in_threadpool(getattr(self.platform, method), *args, **kwargs)

    # -- rendering -------------------------------------------------------------------------------------------
    def render(self, request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        session: Session = request.state.session
        base = request.scope.get("root_path", "")
        context.update(
            request=request,
            me=session.moderator,
            session=session,
            open_mode=self.auth.open_mode,
            csrf_token=csrf.token(self.auth.secret, session.sid),
            base=base,
            msg=request.query_params.get("msg"),
            now=time.time(),
        )
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def error(self, request: Request, status: int, title: str, detail: str) -> HTMLResponse:
        return self.render(request, "error.html", status=status, title=title, detail=detail)

    def back(self, request: Request, path: str, **params) -> RedirectResponse:
        base = request.scope.get("root_path", "")
        query = f"?{urlencode({k: v for k, v in params.items() if v})}" if params else ""
        return RedirectResponse(f"{base}{path}{query}", status_code=303)

    # -- sign-in ---------------------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        if request.method == "GET":
            if request.state.session.signed_in:
                return self.back(request, "/queues")
            return self.render(request, "login.html", next=_safe_next(request.query_params.get("next")))
        form = await request.form()
        key, name = str(form.get("key", "")), str(form.get("name", "")).strip()
        fp = self.auth.check_key(key) if key else None
        if self.auth.open_mode:
            return self.back(request, "/queues")
        if not fp or not MODERATOR_ID.fullmatch(name):
            await asyncio.sleep(0.3)  # a little friction for guessing
            problem = (
                "密钥不正确 wrong key" if not fp else "请输入审核员名称 (1–64 个字母、数字、汉字或 ._@-)"
            )
            return self.render(
                request, "login.html", status=401, error=problem, next=_safe_next(form.get("next"))
            )
        session = self.auth.new_session(moderator=name, key_fp=fp)  # a new sid: no fixation
        response = self.back(request, _safe_next(form.get("next")) or "/queues")
        set_cookie(response, request, self.auth.cookie_value(session))
        log.info("console sign-in", extra={"fields": {"moderator": name, "key": fp[:6]}})
        return response

    async def logout(self, request: Request) -> Response:
        response = self.back(request, "/login", msg="signed_out")
        set_cookie(response, request, self.auth.cookie_value(self.auth.new_session()))
        return response

    # -- queues ----------------------------------------------------------------------------------------------
    async def queues(self, request: Request) -> Response:
        q = request.query_params
        name = q.get("queue") if q.get("queue") in pages.QUEUES else "reports"
        filters = {k: q.get(k) or None for k in ("status", "label", "kind", "account_id", "group_id")}
        claimed = {"yes": True, "no": False}.get(q.get("claimed", ""))
        offset = _int(q.get("offset"), 0, 0, 1_000_000)
        rows = await self.call("queue", name, **filters, claimed=claimed, limit=PAGE_SIZE, offset=offset)
        depths = await self.call("queue_depths")
        return self.render(
            request,
            "queues.html",
            queue=name,
            rows=rows,
            depths=depths,
            filters={**filters, "claimed": q.get("claimed", "")},
            offset=offset,
            page_size=PAGE_SIZE,
            query={k: v for k, v in q.items() if k != "offset"},
        )

    # -- a case ----------------------------------------------------------------------------------------------
    async def case(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        case_id = request.path_params["case_id"]
        case = await self.call("case", case_id)
        media = await run_in_threadpool(
            self._media_state, case_id, case.get("media") or [], case.get("evidence")
        )
        me = request.state.session.moderator
        now = time.time()
        claim_live = bool(case.get("claimed_by")) and (case.get("claim_expires_at") or 0) > now
        return self.render(
            request,
            "case.html",
            status=status,
            case=case,
            media=media,
            error=error,
            mine=claim_live and case.get("claimed_by") == me,
            held_by=case.get("claimed_by") if claim_live and case.get("claimed_by") != me else None,
            idem=uuid.uuid4().hex,
            cluster_svg=_cluster_svg(case),
        )

    def _media_state(self, case_id: str, media: list[dict], evidence: list[dict] | None) -> list[dict]:
        """Each kept picture with whether the browser can show it (the file is there and is an image), and its
        OCR lines and QR codes that carry evidence marked (drawn thicker)."""
        hits = {
            (loc.get("source"), loc.get("index")) for e in evidence or [] for loc in e.get("locations") or []
        }
        out = []
        for m in media:
            if m.get("kind") == "image":
                m = {
                    **m,
                    "boxes": [
                        {**b, "evidence": ("ocr", i) in hits} for i, b in enumerate(m.get("boxes") or [])
                    ],
                    "qr": [{**q, "evidence": ("qr", i) in hits} for i, q in enumerate(m.get("qr") or [])],
                }
            problem = None
            try:
                with open(self.platform.media_path(case_id, m["name"]), "rb") as f:
                    if not pages.renderable_image(f.read(16)):
                        problem = "文件不是可显示的图片 the kept file is not an image a browser can show"
            except NotFound:
                problem = "图片已过保留期或已删除 the kept image is gone (retention)"
            except OSError:
                problem = "图片无法读取 the kept image cannot be read"
            out.append({**m, "problem": problem})
        return out

    async def media(self, request: Request) -> Response:
        case_id, name = request.path_params["case_id"], request.path_params["name"]
        path = await self.call("media_path", case_id, name)
        with open(path, "rb") as f:
            head = f.read(16)
        if not pages.renderable_image(head):
            return Response("not an image a browser can show", status_code=415, media_type="text/plain")
        return FileResponse(
            path, media_type=pages.image_type(head), headers={"cache-control": "private, no-store"}
        )

    async def claim(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        try:
            await self.call("claim", case_id, request.state.session.moderator)
        except Conflict as e:
            return await self.case(request, error=f"无法认领 cannot claim: {e}", status=409)
        return self.back(request, f"/case/{quote(case_id, safe=':')}", msg="claimed")

    async def release(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        try:
            await self.call("release", case_id, request.state.session.moderator)
        except Conflict as e:
            return await self.case(request, error=f"无法释放 cannot release: {e}", status=409)
        return self.back(request, f"/case/{quote(case_id, safe=':')}", msg="released")

    async def decide(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        form = await request.form()
        decision = str(form.get("decision", ""))
        reason = str(form.get("reason", "")).strip()
        labels = [str(v) for v in form.getlist("labels") if str(v) in pages.LABELS]
        if decision not in pages.DECISIONS:
            return await self.case(
                request, error="请选择处理结果 choose confirm, reject or escalate", status=400
            )
        if not reason:
            return await self.case(request, error="请填写理由 a reason is required", status=400)
        try:
            await self.call(
                "decide",
                case_id,
                request.state.session.moderator,
                decision,
                reason,
                labels=labels or None,
                idempotency_key=str(form.get("idem") or "") or None,
            )
        except Conflict as e:
            return await self.case(
                request, error=f"认领已失效，请重新认领 stale claim — claim the case again: {e}", status=409
            )
        except InputError as e:
            return await self.case(request, error=f"输入有误 {e}", status=400)
        return self.back(request, f"/case/{quote(case_id, safe=':')}", msg="decided")

    # -- accounts, groups and their disposal -----------------------------------------------------------------
    async def entity(self, request: Request) -> Response:
        kind = "account" if request.url.path.rstrip("/").split("/")[-2] == "account" else "group"
        entity_id = request.path_params["entity_id"]
        try:
            risk = await self.call("entity_risk", kind, entity_id)
        except NotFound:
            risk = None
        actions = await self.call("actions", entity_kind=kind, entity_id=entity_id, limit=100)
        if risk is None and not actions:
            raise NotFound(f"{kind} {entity_id!r}: fanzha has scored nothing from it and no action names it")
        cases = await self.call("queue", "reports", **{f"{kind}_id": entity_id}, limit=20)
        return self.render(
            request, "entity.html", kind=kind, entity_id=entity_id, risk=risk, actions=actions, cases=cases
        )

    async def dispose(self, request: Request) -> Response:
        form = await request.form()
        kind, entity_id = str(form.get("entity_kind", "")), str(form.get("entity_id", "")).strip()
        action, reason = str(form.get("action", "")), str(form.get("reason", "")).strip()
        allowed = (
            pages.ACCOUNT_ACTIONS if kind == "account" else pages.GROUP_ACTIONS if kind == "group" else {}
        )
        if action not in allowed or not entity_id:
            raise InputError(f"{action!r} is not an action on a {kind or 'nothing'}")
        if not reason:
            raise InputError("请填写理由 a reason is required")
        seconds = _int(form.get("duration_s"), 0, 0, 10 * 365 * 86400) or None
        case_id = str(form.get("case_id") or "") or None
        evidence = [str(v) for v in form.getlist("evidence")][:20] or None
        result = await self.call(
            "dispose",
            kind,
            entity_id,
            action,
            request.state.session.moderator,
            reason,
            duration_s=seconds,
            case_id=case_id,
            evidence=evidence,
        )
        return self.back(
            request, f"/{kind}/{quote(entity_id, safe='')}", msg=f"action:{result.get('action_id', '')}"
        )

    async def lift(self, request: Request) -> Response:
        form = await request.form()
        reason = str(form.get("reason", "")).strip() or "lifted"
        result = await self.call(
            "lift",
            _int(request.path_params["action_id"], 0, 0, 2**63 - 1),
            request.state.session.moderator,
            reason,
        )
        kind, entity_id = result.get("entity_kind", "account"), result.get("entity_id", "")
        return self.back(request, f"/{kind}/{quote(str(entity_id), safe='')}", msg="lifted")

    async def actions(self, request: Request) -> Response:
        rows = await self.call("actions", limit=200)
        return self.render(request, "actions.html", actions=rows)

    # -- dashboard and audit ---------------------------------------------------------------------------------
    async def dashboard(self, request: Request) -> Response:
        days = _int(request.query_params.get("days"), 14, 1, 365)
        d = await self.call("dashboard", days=days)
        per_day = [(row["day"], row["count"]) for row in d.get("decisions_per_day") or []]
        mix = sorted((d.get("label_mix") or {}).items(), key=lambda kv: -kv[1])
        depths = d.get("queue_depths") or {}
        return self.render(
            request,
            "dashboard.html",
            d=d,
            days=days,
            per_day_svg=charts.column_chart(per_day, f"每日决定 decisions per day ({days} 天)"),
            mix_svg=charts.bar_chart([(pages.label_name(k), v) for k, v in mix], "标签分布 label mix"),
            depth_svg=charts.bar_chart(
                [(pages.QUEUES.get(k, (k,))[0], depths.get(k, 0)) for k in pages.QUEUES],
                "队列深度 queue depths",
            ),
        )

    def _audit_filters(self, request: Request) -> dict:
        q = request.query_params
        return {
            "moderator_id": q.get("moderator_id") or None,
            "kind": q.get("kind") or None,
            "since": _day(q.get("since")),
            "until": _day(q.get("until"), end=True),
        }

    async def audit(self, request: Request) -> Response:
        filters = self._audit_filters(request)
        offset = _int(request.query_params.get("offset"), 0, 0, 10_000_000)
        rows = await self.call("audit_log", **filters, limit=200, offset=offset)
        return self.render(
            request,
            "audit.html",
            rows=rows,
            offset=offset,
            query={k: v for k, v in request.query_params.items() if k != "offset"},
            form=dict(request.query_params),
        )

    async def audit_csv(self, request: Request) -> Response:
        text = await self.call("audit_csv", **self._audit_filters(request))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Response(
            "\ufeff" + text,  # a BOM so that spreadsheet programs read the Chinese as UTF-8
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="fanzha-audit-{stamp}.csv"'},
        )

    async def home(self, request: Request) -> Response:
        return self.back(request, "/queues")

    async def not_found(self, request: Request, exc=None) -> Response:
        return self.error(request, 404, "找不到 Not found", "这个页面或案件不存在 No such page or case.")

    async def not_allowed(self, request: Request, exc=None) -> Response:
        return self.error(request, 405, "不支持 Method not allowed", f"{request.method} {request.url.path}")

    async def failed(self, request: Request, exc: FanzhaError) -> Response:
        """fanzha's errors as pages: what happened, in both languages."""
        if isinstance(exc, NotFound):
            return self.error(request, 404, "找不到 Not found", str(exc))
        if isinstance(exc, Conflict):
            return self.error(request, 409, "冲突 Conflict", str(exc))
        if isinstance(exc, InputError):
            return self.error(request, 400, "输入有误 Bad input", str(exc))
        log.error("console: %s", exc)
        return self.error(request, 500, "出错了 Error", str(exc))


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_TTL_S,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _safe_next(value) -> str | None:
    """A page to return to after login: a console path, never another site (//host or a scheme)."""
    value = str(value or "")
    if value.startswith("/") and not value.startswith("//") and "\\" not in value and "://" not in value:
        return value
    return None


def _int(value, default: int, lo: int, hi: int) -> int:
    try:
        return min(max(int(str(value)), lo), hi)
    except (TypeError, ValueError):
        return default


def _day(value: str | None, end: bool = False) -> float | None:
    """'YYYY-MM-DD' (local time) → epoch seconds at the start (or the end) of that day."""
    if not value:
        return None
    try:
        t = time.mktime(time.strptime(value, "%Y-%m-%d"))
    except ValueError:
        raise InputError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    return t + 86400 if end else t


def _cluster_svg(case: dict):
    """The case's campaign cluster as a small graph: its accounts (members) and the handles they share."""
    cluster = case.get("cluster") or (case.get("account") or {}).get("cluster") or {}
    members = cluster.get("members") or cluster.get("accounts") or []
    accounts = [a if isinstance(a, str) else a.get("account_id", "") for a in members if a]
    handles = [
        h if isinstance(h, str) else f"{h.get('kind', '')}:{h.get('value', '')}"
        for h in cluster.get("handles") or []
    ]
    if not isinstance(members, list) or len(accounts) < 2:
        return None
    return charts.cluster_graph(case.get("account_id") or "", accounts, handles)


class Guard:
    """Around every console page: the session (cookie, header key, or loopback), sign-in required but for the
    login form and static files, CSRF on every POST, a small body limit, security headers, and fanzha's errors
    as pages."""

    def __init__(self, app, console: Console) -> None:
        self.app, self.console, self.auth = app, console, console.auth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        cookies = _cookies(headers.get("cookie", ""))
        session, fresh = self.auth.session_of(cookies, headers, scope)
        scope.setdefault("state", {})["session"] = session
        root = scope.get("root_path", "")
        path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
        method = scope["method"]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CSP),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not any(k.lower() == b"cache-control" for k, _ in message.get("headers", [])):
                    extra.append((b"cache-control", b"no-store"))
                if fresh and session.via != "header" and not _sets_cookie(message):
                    cookie = SimpleCookie()
                    cookie[COOKIE] = self.auth.cookie_value(session)
                    morsel = cookie[COOKIE]
                    morsel.update(
                        {
                            "path": root or "/",
                            "httponly": True,
                            "samesite": "Strict",
                            "max-age": SESSION_TTL_S,
                        }
                    )
                    if scope.get("scheme") == "https":
                        morsel["secure"] = True
                    extra.append((b"set-cookie", morsel.OutputString().encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if path == "":  # /console itself: to the pages, by a relative redirect (never one built from Host)
            path = "/"
            scope = {**scope, "path": root + "/"}
        public = path == "/login" or path.startswith("/static/")
        if not public and not session.signed_in:
            return await self._refuse(scope, receive, send_with_headers, headers, path)
        if method not in ("GET", "HEAD", "POST"):
            return await _plain(send_with_headers, 405, "method not allowed")
        if method == "POST":
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_FORM_BYTES:
                return await _plain(send_with_headers, 413, f"form over {MAX_FORM_BYTES:,} bytes")
            body = await _read(receive, MAX_FORM_BYTES)
            if body is None:
                return await _plain(send_with_headers, 413, f"form over {MAX_FORM_BYTES:,} bytes")
            if session.via != "header":
                fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                if not csrf.same_origin(headers) or not csrf.valid(
                    self.auth.secret, session.sid, fields.get(csrf.FIELD)
                ):
                    return await self._page(
                        scope,
                        send_with_headers,
                        self.console.error(
                            Request(scope),
                            403,
                            "请求被拒绝 Forbidden",
                            "表单缺少有效的 CSRF 令牌（或来自其他站点）。请刷新页面后重试。"
                            " The form has no valid CSRF token (or came from another site): reload the page and try again.",
                        ),
                    )
            receive = replay(body)
        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope, receive, send, headers, path) -> None:
        request = Request(scope, receive)
        if self.auth.open_mode:
            response = self.console.error(
                request,
                403,
                "仅限本机 Loopback only",
                "未配置审核员密钥（FANZHA_MODERATOR_KEYS），审核台只在服务仅监听本机回环地址、且请求来自本机时开放。"
                " No moderator keys are set: the console is open only while the service listens on loopback and the"
                " request comes from this machine.",
            )
        elif scope["method"] == "GET" and "text/html" in headers.get("accept", "text/html"):
            target = (  # relative to the console: login sends the browser back under its own prefix
                path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
            )
            response = RedirectResponse(
                f"{scope.get('root_path', '')}/login?{urlencode({'next': target})}", status_code=303
            )
        else:
            response = Response(
                "sign in first (a session, or a moderator key in X-API-Key)", 401, media_type="text/plain"
            )
        await response(scope, receive, send)

    async def _page(self, scope, send, response: Response) -> None:
        await response(scope, replay(b""), send)


CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _sets_cookie(message) -> bool:
    return any(k.lower() == b"set-cookie" for k, _ in message.get("headers", []))


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in out:
            out[name] = value
    return out


async def _read(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _plain(send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(platform: object | Callable | None = None, auth: Auth | None = None) -> Guard:
    """The console as an ASGI app. `platform`: a Platform (tests, the bench) or a callable returning one; by
    default the BentoML service's own (`bentoml.get_current_service().platform`)."""
    console = Console(platform if platform is not None else current_service_platform, auth or Auth())
    c = console
    routes = [
        Route("/", c.home),
        Route("/login", c.login_page, methods=["GET", "POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/queues", c.queues),
        Route("/case/{case_id}", c.case),
        Route("/case/{case_id}/claim", c.claim, methods=["POST"]),
        Route("/case/{case_id}/release", c.release, methods=["POST"]),
        Route("/case/{case_id}/decide", c.decide, methods=["POST"]),
        Route("/media/{case_id}/{name}", c.media),
        Route("/account/{entity_id}", c.entity),
        Route("/group/{entity_id}", c.entity),
        Route("/dispose", c.dispose, methods=["POST"]),
        Route("/actions/{action_id:int}/lift", c.lift, methods=["POST"]),
        Route("/actions", c.actions),
        Route("/dashboard", c.dashboard),
        Route("/audit", c.audit),
        Route("/audit.csv", c.audit_csv),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: c.not_found, 405: c.not_allowed, FanzhaError: c.failed},
    )
    app.router.redirect_slashes = False  # Starlette's would build an absolute URL from the Host header
    guard = Guard(app, console)
    guard.routes = routes  # the route table, for the test that walks every route
    return guard
