"""Form bodies (multipart/form-data, application/x-www-form-urlencoded) as BentoML reads them, made safe.

BentoML 1.4.40 answers a form Starlette cannot parse (no boundary or a wrong one, more fields than allowed, a
part that never ends) with a 500, and reads a plain text value sent where a file is expected as a URL to
download on the client's behalf. `guard_inputs` wraps every API's input parsing (its input spec, built by
BentoML from the method's signature) so that:

- a form that cannot be parsed is a 400 naming the problem, and a multipart boundary is 1–70 characters
  (RFC 2046);
- a form has at most MAX_FORM_FIELDS fields and MAX_FORM_FILES files (Starlette's defaults are 1,000 each);
- a file field is an uploaded file part: a text value (`-F file=http://…`, `file:///etc/passwd`) is a 400 and
  nothing is ever fetched;
- a text field nested too deeply for json.loads (BentoML decodes every text field as JSON first) is a 400,
  not a RecursionError.

The form is parsed once: Starlette keeps it on the request, and BentoML's own parser reads it from there.
"""

from __future__ import annotations

from bentoml.exceptions import InvalidArgument
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_FORM_FIELDS = 32
MAX_FORM_FILES = 4
MAX_BOUNDARY_CHARS = 70  # RFC 2046 §5.1.1


def guard_inputs(service) -> None:
    """Wrap the input parsing of every API of a BentoML service (once)."""
    for api in service.apis.values():
        guard(api.input_spec)


def guard(spec) -> None:
    if getattr(spec, "__fanzha_guarded__", False):
        return
    parse = spec.from_http_request  # the classmethod, bound to this spec
    file_fields = tuple(getattr(spec, "multipart_fields", ()))

    async def from_http_request(cls, request, serde):
        # the media type exactly as BentoML picks its parser (api_endpoint in _bentoml_impl/server/app.py)
        media_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if media_type in FORM_TYPES:
            form = await read_form(request)
            for name in file_fields:
                if any(not isinstance(value, UploadFile) for value in form.getlist(name)):
                    raise InvalidArgument(
                        f"`{name}` must be an uploaded file (a multipart part with a filename), not a text "
                        "value: nothing is fetched from URLs or paths"
                    )
        try:
            return await parse(request, serde)
        except RecursionError:
            raise InvalidArgument("a form field is nested too deeply to read") from None

    spec.from_http_request = classmethod(from_http_request)
    spec.__fanzha_guarded__ = True


async def read_form(request):
    """The request's form (kept on the request for BentoML's parser); InvalidArgument (400) when it is malformed."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip() == "multipart/form-data":
        boundary = _param(content_type, "boundary")
        if not boundary or len(boundary) > MAX_BOUNDARY_CHARS:
            raise InvalidArgument(
                f"malformed multipart body: the boundary must be 1–{MAX_BOUNDARY_CHARS} characters (RFC 2046), "
                f"got {len(boundary or '')}"
            )
    try:
        return await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    except HTTPException as e:  # Starlette's MultiPartException, raised as a 400 inside an app
        raise InvalidArgument(f"malformed form body: {e.detail}") from None
    except MultiPartException as e:
        raise InvalidArgument(f"malformed form body: {e.message}") from None
    except (
        ValueError,
        KeyError,
        IndexError,
        UnicodeDecodeError,
    ) as e:  # python-multipart on bytes it cannot frame
        raise InvalidArgument(f"malformed form body: {type(e).__name__}: {str(e)[:200]}") from None


def _param(content_type: str, name: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None
