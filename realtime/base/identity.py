"""Who is calling: JWT verification (HS256 secret, RS256/ES256 public key)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from realtime.base.config import Settings
from realtime.base.errors import ErrorCode, HubError

MAX_CLAIM_LENGTH = 128
# An email address is at most 254 characters (RFC 5321's path limit, less the brackets).
MAX_EMAIL_LENGTH = 254
# Later than any real token's expiry (year ~318,000); keeps exp a sane float.
MAX_EXP = 1e13


class Role(StrEnum):
    SUPER_ADMIN = "SUPER_ADMIN"
    CENTER_ADMIN = "CENTER_ADMIN"
    SUPERVISOR = "SUPERVISOR"
    TUTOR = "TUTOR"
    ASSESSOR = "ASSESSOR"
    PARENT = "PARENT"
    STUDENT = "STUDENT"


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller. ``center`` scopes every row and room it may touch."""

    user_id: str
    role: Role
    center: str
    name: str | None
    expires_at: float
    # From the optional ``email`` claim (for the center's directory of people).
    email: str | None = None
    # The clock-skew leeway the token was verified with: it is honoured until
    # ``expires_at`` plus this, on a socket as at its connect.
    leeway_s: float = 0.0

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at + self.leeway_s - (time.time() if now is None else now)


class TokenVerifier:
    """Verifies LMS-issued JWTs against the configured keys.

    The algorithm list is fixed by the configured keys, never taken from the
    token, so ``alg: none`` and HS256-signed-with-the-public-key are refused.
    ``exp`` is required; ``aud`` and ``iss`` are checked when configured.
    """

    def __init__(
        self, settings: Settings, on_verified: Callable[[str], None] | None = None
    ) -> None:
        # Per algorithm, the current key first, then the previous one (key rotation).
        self._keys: dict[str, list[Any]] = {}
        previous_secret, previous_pem = settings.previous_keys()
        for secret in (settings.hs256_secret(), previous_secret):
            if secret is not None:
                self._keys.setdefault("HS256", []).append(secret)
        for pem in (settings.public_key_pem(), previous_pem):
            if pem is not None:
                algorithm, key = _public_key(pem)
                self._keys.setdefault(algorithm, []).append(key)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_s
        # Told "current" or "previous": which key verified a token.
        self._on_verified = on_verified

    @property
    def algorithms(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, token: object) -> Identity:
        """Return the token's identity or raise ``HubError`` (UNAUTHORIZED, TOKEN_EXPIRED)."""
        if not isinstance(token, str) or not token:
            raise HubError(ErrorCode.UNAUTHORIZED, "a token is required")
        if len(token) > 16 * 1024:
            raise HubError(ErrorCode.UNAUTHORIZED, "token is too long")
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise HubError(ErrorCode.UNAUTHORIZED, f"malformed token: {exc}") from None
        keys = self._keys.get(alg, []) if isinstance(alg, str) else []
        if not keys or not isinstance(alg, str):
            raise HubError(
                ErrorCode.UNAUTHORIZED,
                f"token algorithm {alg!r} is not accepted; expected one of {self.algorithms}",
            )
        claims = self._decode(token, alg, keys)
        return replace(_identity_from_claims(claims), leeway_s=float(self._leeway))

    def _decode(self, token: str, alg: str, keys: list[Any]) -> dict[str, Any]:
        """The claims of a token signed with one of ``keys`` (tried in order)."""
        for n, key in enumerate(keys):
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={
                        "require": ["exp", "sub"],
                        "verify_aud": self._audience is not None,
                    },
                )
            except jwt.InvalidSignatureError as exc:
                if n + 1 < len(keys):
                    continue  # perhaps signed with the previous key
                raise HubError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
            except jwt.ExpiredSignatureError:
                raise HubError(ErrorCode.TOKEN_EXPIRED, "token has expired") from None
            except jwt.PyJWTError as exc:
                raise HubError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
            if self._on_verified is not None:
                self._on_verified("current" if n == 0 else "previous")
            return claims
        raise AssertionError("unreachable: an algorithm with no keys is refused before")


def _public_key(pem: str) -> tuple[str, Any]:
    """The algorithm a PEM public key verifies (RS256 or ES256), and the key."""
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"expected an EC key on P-256 for ES256, got {key.curve.name}")
        return "ES256", key
    raise ValueError(f"expected an RSA or EC public key, got {type(key).__name__}")


def _identity_from_claims(claims: dict[str, Any]) -> Identity:
    def text(name: str) -> str:
        value = claims.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_LENGTH:
            raise HubError(
                ErrorCode.UNAUTHORIZED,
                f"claim {name!r} must be a non-empty string of at most "
                f"{MAX_CLAIM_LENGTH} characters",
            )
        return value

    def optional_text(name: str) -> str | None:
        return None if claims.get(name) is None else text(name)

    def email() -> str | None:
        value = claims.get("email")
        if value is None:
            return None
        if not isinstance(value, str) or "@" not in value or len(value) > MAX_EMAIL_LENGTH:
            raise HubError(
                ErrorCode.UNAUTHORIZED,
                f"claim 'email' must be an address of at most {MAX_EMAIL_LENGTH} characters",
            )
        return value

    role = text("role")
    try:
        parsed_role = Role(role)
    except ValueError:
        raise HubError(
            ErrorCode.UNAUTHORIZED,
            f"claim 'role' must be one of {[r.value for r in Role]}, got {role!r}",
        ) from None
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < MAX_EXP:
        raise HubError(
            ErrorCode.UNAUTHORIZED,
            f"claim 'exp' must be seconds since the epoch below {MAX_EXP:g}",
        )
    return Identity(
        user_id=text("sub"),
        role=parsed_role,
        center=text("center"),
        name=optional_text("name"),
        expires_at=float(exp),
        email=email(),
    )


def mint_token(
    settings: Settings,
    *,
    sub: str,
    role: Role,
    center: str,
    name: str | None = None,
    email: str | None = None,
    ttl_s: float = 3600,
    private_key_pem: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """Mint a development token signed with the hub's HS256 secret (or a given private key)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role.value,
        "center": center,
        "iat": now,
        "exp": now + int(ttl_s),
    }
    if name:
        claims["name"] = name
    if email:
        claims["email"] = email
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if private_key_pem is not None:
        return jwt.encode(claims, private_key_pem, algorithm=algorithm)
    secret = settings.hs256_secret()
    if secret is None:
        raise ValueError("no HS256 secret configured; pass a private key to sign with")
    return jwt.encode(claims, secret, algorithm="HS256")
