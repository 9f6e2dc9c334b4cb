"""The one config base: frozen, keyword-only, unknown fields rejected."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]

C = TypeVar("C", bound="Config")

SECRET_FIELDS = frozenset({"api_key", "database_url", "redis_url", "password", "secret"})


class Config(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every `<Component>Config`; secrets are redacted in `repr`."""

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            shown = redact_value(name, value)
            parts.append(f"{name}={shown!r}" if shown is value else f"{name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__

    def replace(self: C, **changes: Any) -> C:
        """Return a copy with `changes` applied (validated like a fresh parse)."""
        data = msgspec.to_builtins(self)
        for key, value in changes.items():
            data[key] = msgspec.to_builtins(value)
        return msgspec.convert(data, type(self))

    def to_dict(self) -> dict[str, Any]:
        """Plain data with secrets redacted (for logs, pages and APIs)."""
        out: dict[str, Any] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, Config):
                out[name] = value.to_dict()
            else:
                shown = redact_value(name, value)
                out[name] = msgspec.to_builtins(shown) if shown is value else shown
        return out


def redact_value(name: str, value: Any) -> Any:
    """Hide a secret value; for URLs hide only the password part."""
    if name not in SECRET_FIELDS or value in (None, ""):
        return value
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return "***"


def redact_url(url: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{host}" if ":" in creds else url
