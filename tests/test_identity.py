"""Unit tests of ``TokenVerifier`` and ``mint_token``: pure logic, no server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from realtime.base.config import DEV_JWT_SECRET, Settings
from realtime.base.errors import ErrorCode, HubError
from realtime.base.identity import MAX_CLAIM_LENGTH, Identity, Role, TokenVerifier, mint_token

SECRET = "identity-test-secret-0123456789-abcdefghij"
OTHER_SECRET = "a-different-secret-of-enough-length-9876543210"
AUDIENCE = "tutor-hub"
ISSUER = "https://lms.example.test"

RsaKey = rsa.RSAPrivateKey
EcKey = ec.EllipticCurvePrivateKey


# -- helpers -----------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    """A complete, valid claim set expiring in ten minutes; ``None`` drops a claim."""
    base: dict[str, Any] = {
        "sub": "user-1",
        "role": "TUTOR",
        "center": "center-1",
        "exp": int(time.time()) + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_built(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT assembled by hand: HMAC-SHA256 over the signing input, or no signature at all."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if hmac_key is None:
        return f"{signing_input}."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_pem(key: RsaKey | EcKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: RsaKey | EcKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def refused(verifier: TokenVerifier, token: object) -> HubError:
    with pytest.raises(HubError) as caught:
        verifier.verify(token)
    return caught.value


@pytest.fixture(scope="module")
def rsa_key() -> RsaKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> RsaKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> EcKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, jwt_leeway_s=0))


# -- HS256: acceptance and the Identity it maps to ---------------------------


def test_valid_hs256_token_maps_to_identity(verifier: TokenVerifier) -> None:
    exp = int(time.time()) + 600
    token = hs256(claims(sub="u-42", role="SUPERVISOR", center="c-9", name="Ada", exp=exp))

    identity = verifier.verify(token)

    assert identity == Identity(
        user_id="u-42", role=Role.SUPERVISOR, center="c-9", name="Ada", expires_at=float(exp)
    )
    assert identity.role is Role.SUPERVISOR
    assert identity.seconds_left(now=exp - 100) == 100


def test_name_claim_is_optional(verifier: TokenVerifier) -> None:
    identity = verifier.verify(hs256(claims()))

    assert identity.name is None
    assert identity.user_id == "user-1"


@pytest.mark.parametrize("role", list(Role))
def test_every_role_value_is_accepted(verifier: TokenVerifier, role: Role) -> None:
    assert verifier.verify(hs256(claims(role=role.value))).role is role


def test_secret_only_settings_accept_hs256_alone() -> None:
    assert TokenVerifier(Settings(jwt_secret=SECRET)).algorithms == ["HS256"]


# -- signatures and expiry ---------------------------------------------------


def test_token_signed_with_another_secret_is_unauthorized(verifier: TokenVerifier) -> None:
    error = refused(verifier, hs256(claims(), secret=OTHER_SECRET))

    assert error.code is ErrorCode.UNAUTHORIZED


def test_tampered_payload_is_unauthorized(verifier: TokenVerifier) -> None:
    header, _, signature = hs256(claims(role="STUDENT")).split(".")
    forged_payload = b64url(json.dumps(claims(role="SUPER_ADMIN")).encode())

    error = refused(verifier, f"{header}.{forged_payload}.{signature}")

    assert error.code is ErrorCode.UNAUTHORIZED


def test_expired_token_is_token_expired(verifier: TokenVerifier) -> None:
    error = refused(verifier, hs256(claims(exp=int(time.time()) - 60)))

    assert error.code is ErrorCode.TOKEN_EXPIRED


def test_leeway_accepts_a_token_expired_moments_ago() -> None:
    token = hs256(claims(exp=int(time.time()) - 5))

    lenient = TokenVerifier(Settings(jwt_secret=SECRET, jwt_leeway_s=30))
    strict = TokenVerifier(Settings(jwt_secret=SECRET, jwt_leeway_s=0))

    assert lenient.verify(token).user_id == "user-1"
    assert refused(strict, token).code is ErrorCode.TOKEN_EXPIRED


def test_the_leeway_is_part_of_the_identity_a_socket_keeps() -> None:
    """A token let in by the leeway is not expired at once on its socket (issue 19,
    finding 5): it lasts until exp plus the leeway, and reports exp as issued."""
    exp = int(time.time()) - 5
    who = TokenVerifier(Settings(jwt_secret=SECRET, jwt_leeway_s=30)).verify(hs256(claims(exp=exp)))
    assert who.expires_at == exp and who.leeway_s == 30
    assert 20 < who.seconds_left() <= 25
    assert who.seconds_left(now=exp + 30) == 0


# -- claims ------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["sub", "role", "center", "exp"])
def test_missing_required_claim_is_unauthorized(verifier: TokenVerifier, missing: str) -> None:
    payload = claims()
    del payload[missing]

    error = refused(verifier, hs256(payload))

    assert error.code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("role", ["ADMIN", "tutor", "", "SUPER_ADMIN "])
def test_unknown_role_is_unauthorized(verifier: TokenVerifier, role: str) -> None:
    error = refused(verifier, hs256(claims(role=role)))

    assert error.code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("claim", ["sub", "center"])
@pytest.mark.parametrize("value", [42, ["c1"], {"id": "c1"}, True])
def test_non_string_identity_claim_is_unauthorized(
    verifier: TokenVerifier, claim: str, value: object
) -> None:
    error = refused(verifier, hs256(claims(**{claim: value})))

    assert error.code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("claim", ["sub", "center", "name"])
def test_claim_longer_than_limit_is_unauthorized(verifier: TokenVerifier, claim: str) -> None:
    error = refused(verifier, hs256(claims(**{claim: "x" * (MAX_CLAIM_LENGTH + 1)})))

    assert error.code is ErrorCode.UNAUTHORIZED
    assert claim in error.message


@pytest.mark.parametrize("claim", ["sub", "center", "name"])
def test_claim_at_exactly_the_limit_is_accepted(verifier: TokenVerifier, claim: str) -> None:
    value = "x" * MAX_CLAIM_LENGTH
    identity = verifier.verify(hs256(claims(**{claim: value})))

    assert {"sub": identity.user_id, "center": identity.center, "name": identity.name}[
        claim
    ] == value


def test_absurdly_large_exp_is_unauthorized_not_a_crash(verifier: TokenVerifier) -> None:
    # verify() promises Identity or HubError; an exp beyond float range must not
    # escape as OverflowError (which the socket/REST layers turn into a 500).
    error = refused(verifier, hs256(claims(exp=10**400)))

    assert error.code is ErrorCode.UNAUTHORIZED


# -- malformed input ---------------------------------------------------------


@pytest.mark.parametrize("token", [None, 123, b"a.b.c", ["a.b.c"], {"token": "a.b.c"}, ""])
def test_non_string_or_empty_token_is_unauthorized(verifier: TokenVerifier, token: object) -> None:
    assert refused(verifier, token).code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "...", "Bearer x.y.z"])
def test_garbage_token_is_unauthorized(verifier: TokenVerifier, token: str) -> None:
    assert refused(verifier, token).code is ErrorCode.UNAUTHORIZED


def test_oversized_token_is_unauthorized_before_parsing(verifier: TokenVerifier) -> None:
    token = hs256(claims(padding="p" * 20_000))

    error = refused(verifier, token)

    assert error.code is ErrorCode.UNAUTHORIZED
    assert "too long" in error.message


# -- algorithm pinning -------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_refused(verifier: TokenVerifier, alg: str) -> None:
    token = hand_built({"alg": alg, "typ": "JWT"}, claims(), hmac_key=None)

    assert refused(verifier, token).code is ErrorCode.UNAUTHORIZED


def test_alg_none_from_pyjwt_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), None, algorithm="none")

    assert refused(verifier, token).code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("alg", [["HS256"], None, 256])
def test_non_string_alg_header_is_refused(verifier: TokenVerifier, alg: object) -> None:
    token = hand_built({"alg": alg, "typ": "JWT"}, claims(), hmac_key=SECRET.encode())

    assert refused(verifier, token).code is ErrorCode.UNAUTHORIZED


def test_hand_built_hs256_helper_makes_valid_tokens(verifier: TokenVerifier) -> None:
    # Guards the algorithm-confusion tests below: their tokens are well formed,
    # so a refusal there is the verifier's doing, not a broken helper.
    token = hand_built({"alg": "HS256", "typ": "JWT"}, claims(), hmac_key=SECRET.encode())

    assert verifier.verify(token).user_id == "user-1"


# -- RS256 / ES256 with a configured public key ------------------------------


def test_rs256_token_accepted_with_configured_rsa_public_key(rsa_key: RsaKey) -> None:
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem(rsa_key)))

    identity = verifier.verify(jwt.encode(claims(name="Grace"), rsa_key, algorithm="RS256"))

    assert verifier.algorithms == ["RS256"]
    assert (identity.user_id, identity.role, identity.name) == ("user-1", Role.TUTOR, "Grace")


def test_rs256_token_from_another_rsa_key_is_unauthorized(
    rsa_key: RsaKey, other_rsa_key: RsaKey
) -> None:
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem(rsa_key)))

    error = refused(verifier, jwt.encode(claims(), other_rsa_key, algorithm="RS256"))

    assert error.code is ErrorCode.UNAUTHORIZED


def test_public_key_can_be_read_from_a_file(rsa_key: RsaKey, tmp_path: Path) -> None:
    key_file = tmp_path / "lms.pem"
    key_file.write_text(public_pem(rsa_key))
    verifier = TokenVerifier(Settings(jwt_public_key_file=key_file))

    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).center == "center-1"


def test_es256_token_accepted_with_configured_ec_public_key(ec_key: EcKey) -> None:
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem(ec_key)))

    identity = verifier.verify(jwt.encode(claims(role="PARENT"), ec_key, algorithm="ES256"))

    assert verifier.algorithms == ["ES256"]
    assert identity.role is Role.PARENT


def test_es256_token_from_another_ec_key_is_unauthorized(ec_key: EcKey) -> None:
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem(ec_key)))
    stranger = ec.generate_private_key(ec.SECP256R1())

    error = refused(verifier, jwt.encode(claims(), stranger, algorithm="ES256"))

    assert error.code is ErrorCode.UNAUTHORIZED


def test_rs256_token_refused_when_only_an_ec_key_is_configured(
    ec_key: EcKey, rsa_key: RsaKey
) -> None:
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem(ec_key)))

    error = refused(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256"))

    assert error.code is ErrorCode.UNAUTHORIZED
    assert "RS256" in error.message


def test_public_key_only_disables_the_development_secret(rsa_key: RsaKey) -> None:
    verifier = TokenVerifier(Settings(jwt_public_key=public_pem(rsa_key)))

    error = refused(verifier, hs256(claims(), secret=DEV_JWT_SECRET))

    assert "HS256" not in verifier.algorithms
    assert error.code is ErrorCode.UNAUTHORIZED


def test_secret_and_public_key_together_accept_both_algorithms(rsa_key: RsaKey) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET, jwt_public_key=public_pem(rsa_key)))

    assert verifier.algorithms == ["HS256", "RS256"]
    assert verifier.verify(hs256(claims(sub="via-hs"))).user_id == "via-hs"
    rs_token = jwt.encode(claims(sub="via-rs"), rsa_key, algorithm="RS256")
    assert verifier.verify(rs_token).user_id == "via-rs"


@pytest.mark.parametrize("with_secret", [False, True], ids=["key-only", "key-and-secret"])
def test_hs256_signed_with_the_public_key_pem_is_refused(
    rsa_key: RsaKey, with_secret: bool
) -> None:
    # Algorithm confusion: an attacker knows the public PEM and uses it as an HMAC secret.
    pem = public_pem(rsa_key)
    settings = Settings(jwt_public_key=pem, jwt_secret=SECRET if with_secret else None)
    verifier = TokenVerifier(settings)
    forged = hand_built(
        {"alg": "HS256", "typ": "JWT"}, claims(role="SUPER_ADMIN"), hmac_key=pem.encode()
    )

    error = refused(verifier, forged)

    assert error.code is ErrorCode.UNAUTHORIZED


# -- audience and issuer -----------------------------------------------------


@pytest.fixture
def scoped_verifier() -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, jwt_audience=AUDIENCE, jwt_issuer=ISSUER))


def test_right_audience_and_issuer_are_accepted(scoped_verifier: TokenVerifier) -> None:
    token = hs256(claims(aud=AUDIENCE, iss=ISSUER))

    assert scoped_verifier.verify(token).user_id == "user-1"


def test_audience_list_containing_the_hub_is_accepted(scoped_verifier: TokenVerifier) -> None:
    token = hs256(claims(aud=["reports", AUDIENCE], iss=ISSUER))

    assert scoped_verifier.verify(token).user_id == "user-1"


@pytest.mark.parametrize(
    ("aud", "iss"),
    [
        ("other-service", ISSUER),
        (None, ISSUER),
        (AUDIENCE, "https://evil.example.test"),
        (AUDIENCE, None),
        (None, None),
    ],
    ids=["wrong-aud", "missing-aud", "wrong-iss", "missing-iss", "missing-both"],
)
def test_wrong_or_missing_audience_or_issuer_is_unauthorized(
    scoped_verifier: TokenVerifier, aud: str | None, iss: str | None
) -> None:
    error = refused(scoped_verifier, hs256(claims(aud=aud, iss=iss)))

    assert error.code is ErrorCode.UNAUTHORIZED


def test_audience_and_issuer_ignored_when_not_configured(verifier: TokenVerifier) -> None:
    token = hs256(claims(aud="anything", iss="anyone"))

    assert verifier.verify(token).user_id == "user-1"


# -- mint_token --------------------------------------------------------------


def test_mint_token_with_hs256_secret_round_trips() -> None:
    settings = Settings(jwt_secret=SECRET)
    before = time.time()

    token = mint_token(settings, sub="s1", role=Role.STUDENT, center="c2", name="Lin", ttl_s=120)
    identity = TokenVerifier(settings).verify(token)

    assert (identity.user_id, identity.role, identity.center, identity.name) == (
        "s1",
        Role.STUDENT,
        "c2",
        "Lin",
    )
    assert before + 118 <= identity.expires_at <= time.time() + 120


def test_mint_token_with_rsa_private_key_round_trips(rsa_key: RsaKey) -> None:
    settings = Settings(jwt_public_key=public_pem(rsa_key))

    token = mint_token(
        settings,
        sub="a1",
        role=Role.ASSESSOR,
        center="c3",
        private_key_pem=private_pem(rsa_key),
        algorithm="RS256",
    )
    identity = TokenVerifier(settings).verify(token)

    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert (identity.user_id, identity.role, identity.center, identity.name) == (
        "a1",
        Role.ASSESSOR,
        "c3",
        None,
    )


def test_mint_token_with_ec_private_key_round_trips(ec_key: EcKey) -> None:
    settings = Settings(jwt_public_key=public_pem(ec_key))

    token = mint_token(
        settings,
        sub="ca1",
        role=Role.CENTER_ADMIN,
        center="c4",
        private_key_pem=private_pem(ec_key),
        algorithm="ES256",
    )

    assert TokenVerifier(settings).verify(token).role is Role.CENTER_ADMIN


def test_mint_token_includes_configured_audience_and_issuer(rsa_key: RsaKey) -> None:
    settings = Settings(
        jwt_public_key=public_pem(rsa_key), jwt_audience=AUDIENCE, jwt_issuer=ISSUER
    )

    token = mint_token(
        settings,
        sub="t1",
        role=Role.TUTOR,
        center="c1",
        private_key_pem=private_pem(rsa_key),
        algorithm="RS256",
    )
    payload = jwt.decode(token, options={"verify_signature": False})

    assert (payload["aud"], payload["iss"]) == (AUDIENCE, ISSUER)
    assert TokenVerifier(settings).verify(token).user_id == "t1"


def test_mint_token_without_secret_or_private_key_raises(rsa_key: RsaKey) -> None:
    settings = Settings(jwt_public_key=public_pem(rsa_key))

    with pytest.raises(ValueError, match="no HS256 secret"):
        mint_token(settings, sub="t1", role=Role.TUTOR, center="c1")


# -- key rotation: the previous key is accepted until it is removed -----------


def test_a_token_of_the_previous_secret_is_accepted_while_it_is_configured() -> None:
    used: list[str] = []
    rotating = TokenVerifier(
        Settings(jwt_secret=OTHER_SECRET, jwt_previous_secret=SECRET), on_verified=used.append
    )
    assert rotating.verify(hs256(claims(sub="old"), SECRET)).user_id == "old"
    assert rotating.verify(hs256(claims(sub="new"), OTHER_SECRET)).user_id == "new"
    assert used == ["previous", "current"]
    assert rotating.algorithms == ["HS256"]
    # Once the previous secret is removed, its tokens are refused.
    rotated = TokenVerifier(Settings(jwt_secret=OTHER_SECRET))
    with pytest.raises(HubError) as refused:
        rotated.verify(hs256(claims(), SECRET))
    assert refused.value.code is ErrorCode.UNAUTHORIZED


def test_a_token_of_neither_key_is_refused_and_expiry_is_still_checked() -> None:
    rotating = TokenVerifier(Settings(jwt_secret=OTHER_SECRET, jwt_previous_secret=SECRET))
    with pytest.raises(HubError) as forged:
        rotating.verify(hs256(claims(), "a-third-secret-nobody-configured-0123456789"))
    assert (forged.value.code, forged.value.message) == (
        ErrorCode.UNAUTHORIZED,
        "invalid token: Signature verification failed",
    )
    with pytest.raises(HubError) as expired:
        rotating.verify(hs256(claims(exp=int(time.time()) - 3600), SECRET))
    assert expired.value.code is ErrorCode.TOKEN_EXPIRED


def test_rotation_between_key_types_accepts_both_algorithms(rsa_key: RsaKey, ec_key: EcKey) -> None:
    # From RS256 to ES256: both verify during the change, each with its own key.
    rotating = TokenVerifier(
        Settings(jwt_public_key=public_pem(ec_key), jwt_previous_public_key=public_pem(rsa_key))
    )
    assert rotating.algorithms == ["ES256", "RS256"]
    old = jwt.encode(claims(sub="old"), rsa_key, algorithm="RS256")
    new = jwt.encode(claims(sub="new"), ec_key, algorithm="ES256")
    assert [rotating.verify(t).user_id for t in (old, new)] == ["old", "new"]


def test_rotation_between_rsa_keys(rsa_key: RsaKey) -> None:
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rotating = TokenVerifier(
        Settings(jwt_public_key=public_pem(new_key), jwt_previous_public_key=public_pem(rsa_key))
    )
    for key in (rsa_key, new_key):
        assert rotating.verify(jwt.encode(claims(), key, algorithm="RS256")).user_id == "user-1"


def test_a_previous_key_needs_a_current_one() -> None:
    with pytest.raises(ValueError, match="needs a current one"):
        Settings(jwt_previous_secret=SECRET)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(jwt_secret=SECRET, jwt_previous_secret="short")
