"""Claims templates (services.tokens.ClaimsTemplate) sign exactly what TokenSigner.sign does,
and what they sign verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.services.tokens import OFFER_PREFIX, InvalidToken, TokenSigner

text = st.text(
    st.characters(min_codepoint=1, max_codepoint=0x1F600, exclude_categories=("Cs",)), max_size=12
)
values = st.one_of(st.integers(-(10**15), 10**15), text)
fixed_values = st.one_of(
    values,
    st.lists(text, max_size=3),
    st.dictionaries(text, st.one_of(values, st.dictionaries(text, values, max_size=2)), max_size=3),
)
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=6)


@given(
    secret=text,
    prefix=st.sampled_from([OFFER_PREFIX, "", "x", "%s_"]),
    fixed=st.dictionaries(names, fixed_values, max_size=7),
    varying=st.dictionaries(names, values, min_size=1, max_size=4),
)
def test_a_template_signs_as_the_signer(
    secret: str, prefix: str, fixed: dict[str, object], varying: dict[str, int | str]
) -> None:
    fixed = {name: value for name, value in fixed.items() if name not in varying}
    signer = TokenSigner(secret)
    slots = sorted(varying)
    template = signer.template(prefix, fixed, slots)

    token = template.sign(*(varying[name] for name in slots))

    assert token == signer.sign(prefix, {**fixed, **varying})


def test_signed_tokens_verify_and_forgeries_do_not() -> None:
    signer = TokenSigner("secret")
    template = signer.template(OFFER_PREFIX, {"acc": "acme", "tgt": {"seats": 12}}, ["due", "exp"])
    token = template.sign(2_500, 4_000_000_000)
    now = datetime(2026, 11, 15, tzinfo=UTC)
    assert signer.verify(OFFER_PREFIX, token, now)["due"] == 2_500
    with pytest.raises(InvalidToken):
        TokenSigner("other").verify(OFFER_PREFIX, token, now)


def test_varying_claims_must_be_sorted_and_new() -> None:
    signer = TokenSigner("secret")
    with pytest.raises(ValueError):
        signer.template(OFFER_PREFIX, {}, ["exp", "due"])
    with pytest.raises(ValueError):
        signer.template(OFFER_PREFIX, {"due": 1}, ["due"])


def test_a_template_pickles_without_the_secret_and_signs_the_same_after() -> None:
    """Stored offer pages hold templates (api.page_store): pickled, a template is the signer's
    reference, its head and its format, never an HMAC state derived from the secret."""
    import io
    import pickle

    signer = TokenSigner("a-secret-of-this-deployment")
    template = signer.template(OFFER_PREFIX, {"acc": "acme", "tgt": {"seats": 12}}, ["due", "exp"])
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(signer)

    class ByReference(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "signer" if obj is signer else None

    class Resolving(pickle.Unpickler):
        def persistent_load(self, pid: object) -> TokenSigner:
            assert pid == "signer"
            return signer

    buffer = io.BytesIO()
    ByReference(buffer).dump(template)
    data = buffer.getvalue()
    assert signer._key not in data and signer.keyed().digest() not in data
    restored = Resolving(io.BytesIO(data)).load()
    assert restored.sign(1900, 1_800_000_000) == template.sign(1900, 1_800_000_000)
    claims = signer.verify(OFFER_PREFIX, restored.sign(1900, 1_800_000_000), NOW)
    assert claims["due"] == 1900 and claims["tgt"] == {"seats": 12}


def test_a_seal_opens_only_with_its_own_secret_and_bytes() -> None:
    sealed = TokenSigner("one").seal(b"page")
    assert TokenSigner("one").unseal(sealed) == b"page"
    assert TokenSigner("two").unseal(sealed) is None
    assert TokenSigner("one").unseal(sealed[:-1] + b"!") is None
    assert TokenSigner("one").unseal(b"short") is None
