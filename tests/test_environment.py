"""requirements.txt (pip) and environment.yml (conda) name the same packages at the same versions."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep["pip"]:
                if "==" in pip_dep:
                    name, version = pip_dep.split("==")
                    pins[name.strip().lower()] = version.strip()
            continue
        name, _, version = dep.partition("=")
        name = CONDA_TO_PYPI.get(name.strip().lower(), name.strip().lower())
        if name not in NOT_PACKAGES:
            pins[name] = version.strip()
    return pins


def test_every_requirement_is_pinned_exactly():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", line), line


def test_pip_and_conda_name_the_same_packages_and_versions():
    assert pip_pins() == conda_pins()


def test_torch_pair_is_the_locally_available_one():
    pins = pip_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_the_docs_sites_theme_and_plugins_are_pinned():
    """mkdocs.yml's theme and plugins come from packages that both environment files pin."""

    class Loader(yaml.SafeLoader):  # mkdocs.yml may hold !ENV / !relative tags: read them as text
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    site = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)
    plugins = [next(iter(p)) if isinstance(p, dict) else p for p in site.get("plugins", [])]
    builtin = {"search"}  # ships with mkdocs
    needed = {"mkdocs", f"mkdocs-{site['theme']['name']}"} | {p for p in plugins if p not in builtin}
    assert needed <= set(pip_pins()) and needed <= set(conda_pins()), needed - set(pip_pins())
