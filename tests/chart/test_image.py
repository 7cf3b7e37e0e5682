"""The Dockerfile and its build context (no Docker engine needed: the file is checked, not built)."""

from __future__ import annotations

import fnmatch
import re
import tomllib

import yaml

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> list[list[str]]:
    """Instructions (continuation lines joined) per stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def in_context(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching pattern wins;
    a pattern matching a parent directory matches the path)."""
    included = True
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            included = negate
    return included


def test_multi_stage_release_build_into_a_non_root_image():
    build, final = stages()
    assert any("cargo build --release --locked" in i for i in build)
    assert final[0].startswith("FROM gcr.io/distroless/")
    assert "USER 65532:65532" in final
    assert 'ENTRYPOINT ["/usr/local/bin/webhook-operator"]' in final
    copies = [i for i in final if i.startswith("COPY")]
    assert copies == ["COPY --from=build /webhook-operator /usr/local/bin/webhook-operator"]


def test_build_context_has_what_cargo_needs():
    (build, _) = stages()
    sources = [word for i in build if i.startswith("COPY ") for word in i.split()[1:-1]]
    assert set(sources) == {"Cargo.toml", "Cargo.lock", "src", "benches"}
    for source in sources:
        assert (ROOT / source).exists() and in_context(source), source
    # Cargo.toml declares the benches: cargo refuses to build without their files.
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    for bench in manifest.get("bench", []):
        path = bench.get("path", f"benches/{bench['name']}.rs")
        assert in_context(path) and path.split("/")[0] in sources, path
    for path in ("src/main.rs", "src/lib.rs", "benches/pipeline/procs.rs"):
        assert in_context(path), path
    for path in ("target/debug/webhook-operator", ".tools/bin/kubectl", ".git/HEAD", "e2e/run.py"):
        assert not in_context(path), path


def test_versions_agree():
    """The image tag everything installs by default is the crate's version."""
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    chart = yaml.safe_load((ROOT / "charts" / "webhook-operator" / "Chart.yaml").read_text())
    kustomization = yaml.safe_load((ROOT / "config" / "default" / "kustomization.yaml").read_text())
    assert chart["appVersion"] == version, "charts/webhook-operator/Chart.yaml appVersion"
    assert kustomization["images"][0]["newTag"] == version, "config/default/kustomization.yaml newTag"
