"""The server-rendered login and consent pages, in Vietnamese (default) and English.

Plain HTML forms with no script: every value shown is escaped, and the pages forbid framing
and caching.
"""

from __future__ import annotations

from html import escape

from fhir_hub.auth.scopes import ResourceScope, parse_scope

TEXT: dict[str, dict[str, str]] = {
    "vi": {
        "title_login": "Đăng nhập", "national_id": "Số định danh cá nhân", "password": "Mật khẩu",
        "sign_in": "Đăng nhập", "bad_login": "Số định danh hoặc mật khẩu không đúng.",
        "title_consent": "Cho phép truy cập", "asks": "Ứng dụng {app} xin các quyền sau:",
        "allow": "Đồng ý", "deny": "Từ chối", "for_patient": "Hồ sơ của: {name} (mã bệnh nhân {patient})",
        "other": "Ngôn ngữ khác: English", "error": "Không thể tiếp tục",
        "any_type": "mọi loại dữ liệu", "own": "của bạn", "system": "của hệ thống", "where": "chỉ khi",
        "offline_access": "Tiếp tục truy cập khi bạn không dùng ứng dụng (offline)",
        "launch/patient": "Biết hồ sơ bệnh nhân đang mở",
    },
    "en": {
        "title_login": "Sign in", "national_id": "Personal identification number", "password": "Password",
        "sign_in": "Sign in", "bad_login": "Wrong identification number or password.",
        "title_consent": "Allow access", "asks": "The app {app} asks for:",
        "allow": "Allow", "deny": "Deny", "for_patient": "Record of: {name} (patient id {patient})",
        "other": "Tiếng Việt", "error": "Cannot continue",
        "any_type": "every kind of data", "own": "yours", "system": "the system's", "where": "only where",
        "offline_access": "Keep access while you are not using the app (offline)",
        "launch/patient": "Know which patient record is open",
    },
}

PERMISSIONS = {
    "vi": {"c": "tạo", "r": "đọc", "u": "sửa", "d": "xoá", "s": "tìm kiếm"},
    "en": {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"},
}

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}"
          "label{display:block;margin-top:1rem}input[type=text],input[type=password]{width:100%;padding:.4rem}"
          "button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.err{color:#a00}")


def language(query_lang: str | None, accept_language: str | None) -> str:
    if query_lang in TEXT:
        return query_lang
    if accept_language and accept_language.strip().lower().startswith("en"):
        return "en"
    return "vi"


def _page(lang: str, title: str, body: str) -> bytes:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>").encode()


def login(lang: str, txn: str, failed: bool = False) -> bytes:
    t = TEXT[lang]
    other = "en" if lang == "vi" else "vi"
    err = f'<p class="err">{escape(t["bad_login"])}</p>' if failed else ""
    return _page(lang, t["title_login"], (
        f'{err}<form method="post" action="login">'
        f'<input type="hidden" name="txn" value="{escape(txn)}"><input type="hidden" name="lang" value="{lang}">'
        f'<label>{escape(t["national_id"])}<input type="text" name="national_id" autocomplete="username" required>'
        f'</label><label>{escape(t["password"])}<input type="password" name="password" '
        f'autocomplete="current-password" required></label>'
        f'<button type="submit">{escape(t["sign_in"])}</button></form>'
        f'<form method="post" action="login"><input type="hidden" name="txn" value="{escape(txn)}">'
        f'<input type="hidden" name="lang" value="{other}"><button type="submit" name="switch" value="1">'
        f'{escape(t["other"])}</button></form>'))


def describe(scope: str, lang: str) -> str:
    t = TEXT[lang]
    try:
        parsed = parse_scope(scope)
    except ValueError:
        return scope
    if not isinstance(parsed, ResourceScope):
        return t.get(scope, scope)
    perms = ", ".join(PERMISSIONS[lang][p] for p in parsed.permissions)
    what = t["any_type"] if parsed.rtype == "*" else parsed.rtype
    whose = t["own"] if parsed.context == "patient" else t["system"]
    text = f"{perms}: {what} ({whose})"
    if parsed.query:
        text += f" {t['where']} " + ", ".join(f"{k}={v}" for k, v in parsed.query)
    return text


def consent(lang: str, txn: str, app: str, scopes: list[str], patient: str, name: str) -> bytes:
    t = TEXT[lang]
    items = "".join(f"<li>{escape(describe(s, lang))} <code>{escape(s)}</code></li>" for s in scopes)
    return _page(lang, t["title_consent"], (
        f'<p>{escape(t["asks"].format(app=app))}</p><ul>{items}</ul>'
        f'<p>{escape(t["for_patient"].format(name=name, patient=patient))}</p>'
        f'<form method="post" action="consent"><input type="hidden" name="txn" value="{escape(txn)}">'
        f'<input type="hidden" name="lang" value="{lang}">'
        f'<button type="submit" name="decision" value="allow">{escape(t["allow"])}</button>'
        f'<button type="submit" name="decision" value="deny">{escape(t["deny"])}</button></form>'))


def failure(lang: str, message: str) -> bytes:
    return _page(lang, TEXT[lang]["error"], f'<p class="err">{escape(message)}</p>')


__all__ = ["consent", "describe", "failure", "language", "login"]
