"""Registry capabilities: entries declare what callers need to know at registration,
and callers ask the registry instead of building a model or probing class attributes."""

from __future__ import annotations

import pytest

from insr_hpc.errors import ConfigError
from insr_hpc.fields import MODELS, build_model
from insr_hpc.fields.registry import latent_size
from insr_hpc.pde.case import CASES
from insr_hpc.pde.optimizers import OPTIMIZERS
from insr_hpc.registry import Registry


def test_declared_capabilities_are_read_back():
    reg = Registry("widget", "thing.name", capabilities=("shiny", "size"))

    @reg.register("a", shiny=True, size=3)
    class A:
        pass

    @reg.register("b")
    class B:
        pass

    assert dict(reg.capabilities("a")) == {"shiny": True, "size": 3}
    assert dict(reg.capabilities("b")) == {}
    assert reg.has("a", "shiny") and not reg.has("b", "shiny")
    assert reg.having("shiny") == ["a"]
    with pytest.raises(TypeError):
        reg.capabilities("a")["shiny"] = False  # read-only


def test_an_undeclared_capability_name_is_a_programming_error():
    reg = Registry("widget", "thing.name", capabilities=("shiny",))
    with pytest.raises(ValueError, match="widget capability 'shiyn' is not one of this registry's \\(shiny\\)"):
        reg.register("a", shiyn=True)
    reg.register("a")(object)
    with pytest.raises(ValueError, match="'latent'"):
        reg.has("a", "latent")


def test_capabilities_of_an_unknown_name_is_the_usual_config_error():
    with pytest.raises(ConfigError) as get_err:
        MODELS.get("mmgm")
    for ask in (lambda: MODELS.capabilities("mmgm"), lambda: MODELS.has("mmgm", "latent")):
        with pytest.raises(ConfigError) as err:
            ask()
        assert str(err.value) == str(get_err.value)
    assert str(get_err.value).startswith("network.model: unknown model 'mmgm' (known: ")
    assert str(get_err.value).endswith("; did you mean 'mmgn'?")


def test_model_capabilities():
    assert MODELS.having("latent") == ["hybrid", "mmgn"]
    assert MODELS.having("classical") == ["classical", "idw", "kriging"]
    assert MODELS.having("hybrid") == ["hybrid"]
    assert not any(MODELS.has("siren", cap) for cap in ("latent", "classical", "hybrid"))


def test_latent_size_comes_from_params_without_building(monkeypatch):
    mmgn, hybrid, siren = (MODELS.get(n) for n in ("mmgn", "hybrid", "siren"))
    for cls in (mmgn, hybrid, siren):
        monkeypatch.setattr(cls, "build", lambda *a, **k: pytest.fail("built a model to learn its kind"))
    assert latent_size(mmgn.Params(latent=8)) == 8
    assert latent_size(hybrid.Params(latent=5)) == 5
    assert latent_size(siren.Params()) == 0


@pytest.mark.parametrize("name", MODELS.names())
def test_declared_latent_size_matches_the_built_model(name):
    params = MODELS.get(name).Params()
    if hasattr(params, "width"):
        params.width = 8
    model = build_model(params, 2, 1)
    assert int(getattr(model, "latent_dim", 0)) == latent_size(params)
    assert MODELS.has(name, "classical") == hasattr(model, "interpolate")


def test_packable_cases_and_optimisers():
    assert CASES.having("packable") == ["advection"]
    assert OPTIMIZERS.having("packable") == ["adam", "gauss_newton"]
