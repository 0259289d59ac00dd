"""docker-compose.yaml, Dockerfile and .env.example: valid, complete and consistent with the repo.

There is no Docker engine on the test machines, so the compose file is checked the way Compose
itself would before starting anything: ``${VAR}`` interpolation with the values of .env.example,
then validation against the Compose Specification JSON schema (vendored in tests/data, see its
README). ``docker compose config`` runs as well where the Compose CLI exists (it needs no engine).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR; $$ is a literal $.
_VAR_RE = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")
_BRACED_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.DOTALL)


class InterpolationError(ValueError):
    pass


def parse_env_file(path: Path) -> dict[str, str]:
    """The subset of the dotenv format Compose reads: KEY=VALUE, '#' comments, quoted values."""
    values: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{n}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        assert key not in values, f"{path.name}:{n}: {key} defined twice"
        values[key] = value
    return values


def referenced_vars(text: str) -> set[str]:
    names = set()
    for m in _VAR_RE.finditer(text):
        if m.group(0) == "$$":
            continue
        if m.group("plain"):
            names.add(m.group("plain"))
        else:
            b = _BRACED_RE.match(m.group("braced"))
            assert b, f"unsupported interpolation ${{{m.group('braced')}}}"
            names.add(b.group("name"))
    return names


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution, applied to every string in the parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("plain"):
            return env.get(m.group("plain"), "")
        b = _BRACED_RE.match(m.group("braced"))
        if not b:
            raise InterpolationError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = b.group("name"), b.group("op"), b.group("arg")
        is_set, val = name in env, env.get(name, "")
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if is_set else arg
        if op == ":?" and not val or op == "?" and not is_set:
            raise InterpolationError(f"required variable {name} is missing: {arg}")
        if op == ":+":
            return arg if val else ""
        if op == "+":
            return arg if is_set else ""
        return val

    return _VAR_RE.sub(sub, value)


@pytest.fixture(scope="module")
def raw_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw_text, env_example) -> dict:
    return interpolate(yaml.safe_load(raw_text), env_example)


@pytest.fixture(scope="module")
def validator():
    import json

    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_compose_file_matches_the_compose_spec(compose, validator):
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_can_fail(compose, validator):
    broken = {**compose, "services": {**compose["services"],
                                      "airflow-worker": {**compose["services"]["airflow-worker"], "imagee": "x"}}}
    assert any("imagee" in e.message for e in validator.iter_errors(broken))
    worker = compose["services"]["airflow-worker"]
    broken = {**compose, "services": {**compose["services"], "airflow-worker": {
        **worker, "depends_on": {**worker["depends_on"], "redis": {"condition": "service_ready"}}}}}
    assert any("service_ready" in e.message for e in validator.iter_errors(broken))


def _db_connection_vars(env: dict[str, str]) -> set[str]:
    """The migrated databases' connections: every AIRFLOW_CONN_* but Slack's (reach the services by env_file)."""
    return {k for k in env if k.startswith("AIRFLOW_CONN_") and k != "AIRFLOW_CONN_SLACK_API_DEFAULT"}


def test_every_variable_is_in_env_example(raw_text, env_example):
    missing = sorted(referenced_vars(raw_text) - env_example.keys())
    assert not missing, f"docker-compose.yaml uses variables that .env.example does not define: {missing}"
    unused = sorted(env_example.keys() - referenced_vars(raw_text) - _db_connection_vars(env_example))
    assert not unused, f".env.example defines variables docker-compose.yaml never uses: {unused}"


def test_required_variables_fail_loudly_when_missing(raw_text, env_example):
    env = {k: v for k, v in env_example.items() if k != "AIRFLOW__CORE__FERNET_KEY"}
    with pytest.raises(InterpolationError, match="AIRFLOW__CORE__FERNET_KEY"):
        interpolate(yaml.safe_load(raw_text), env)


def test_database_connections_follow_the_config_not_the_compose_file(raw_text, compose, env_example):
    """Issue 12: compose names no migration's connection; every Airflow service reads .env (env_file),
    so a team's own connection ids work unchanged, and .env.example has the shipped config's ids."""
    from migration_engine.config import load_config
    from migration_engine.db import conn_env_var

    assert not _db_connection_vars({v: "" for v in referenced_vars(raw_text)}), \
        "docker-compose.yaml must not name a migrated database's connection variable"
    for name in AIRFLOW_SERVICES:
        files = compose["services"][name].get("env_file")
        assert files and any((f if isinstance(f, str) else f["path"]) == ".env" for f in files), name
    cfg = load_config(ROOT / "include" / "migration.yaml")
    wanted = {conn_env_var(cfg.connections.legacy), conn_env_var(cfg.connections.new)}
    assert wanted == _db_connection_vars(env_example)


def test_env_example_holds_placeholders_only(env_example):
    secretish = [k for k in env_example if re.search(r"PASSWORD|SECRET|KEY|CONN_", k)]
    assert {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_CONN_BREEDERHQ_DB", "AIRFLOW_CONN_MARKETPLACE_DB",
            "AIRFLOW_CONN_SLACK_API_DEFAULT", "SLACK_SIGNING_SECRET"} <= set(secretish)
    for key in secretish:
        assert "change-me" in env_example[key], f"{key} in .env.example must be a change-me placeholder"
    assert ".env" in (ROOT / ".dockerignore").read_text().split(), ".env must stay out of the image"


def test_services_follow_the_official_celery_layout(compose):
    services = compose["services"]
    assert {"postgres", "redis", *AIRFLOW_SERVICES} <= services.keys()
    images = {services[s]["image"] for s in AIRFLOW_SERVICES}
    assert len(images) == 1, f"every Airflow service must run the same image, got {images}"
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env[
            "AIRFLOW__CELERY__BROKER_URL"], name
        assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
    assert services["airflow-worker"]["command"] == "celery worker"
    assert "container_name" not in services["airflow-worker"] and "ports" not in services["airflow-worker"], \
        "airflow-worker must be scalable (docker compose up --scale airflow-worker=N)"
    assert services["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    for name in AIRFLOW_SERVICES[:-1]:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_airflow_gets_every_connection_the_config_names(compose):
    from migration_engine.config import load_config
    from migration_engine.db import conn_env_var

    cfg = load_config(ROOT / "include" / "migration.yaml")
    for name in AIRFLOW_SERVICES:  # Slack by name; the databases through env_file (the test below)
        assert conn_env_var(cfg.connections.slack) in compose["services"][name]["environment"], name
    env = compose["services"]["airflow-worker"]["environment"]
    # the config the workers read is the repo's include/ folder, mounted into the container
    include_target = next(v.split(":")[1] for v in compose["services"]["airflow-worker"]["volumes"]
                          if isinstance(v, str) and v.startswith("./include:"))
    assert env["MIGRATION_CONFIG"] == include_target + "/migration.yaml"


def _bind_sources(service: dict) -> list[str]:
    out = []
    for vol in service.get("volumes", []):
        source = vol.get("source") if isinstance(vol, dict) else vol.split(":", 1)[0]
        if source and (source.startswith(".") or source.startswith("/")):
            out.append(source)
    return out


def test_every_referenced_path_exists(compose):
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for source in _bind_sources(service):
            assert (ROOT / source).exists(), f"{name}: volume source {source} does not exist in the repo"
        for vol in service.get("volumes", []):
            source = vol.get("source") if isinstance(vol, dict) else vol.split(":", 1)[0]
            if source and not source.startswith((".", "/")):
                assert source in named, f"{name}: named volume {source} is not declared under volumes:"
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, str) else env_files:
            path = entry if isinstance(entry, str) else entry["path"]
            required = True if isinstance(entry, str) else entry.get("required", True)
            # .env is the operator's copy of .env.example (git-ignored): the example must exist
            example = ROOT / (path + ".example" if path == ".env" else path)
            assert not required or example.exists(), f"{name}: env_file {path} does not exist"
    mounted = {s.lstrip("./").split("/")[0] for s in _bind_sources(compose["services"]["airflow-worker"])}
    assert {"plugins", "include"} <= mounted  # the code itself is the wheel in the image


def test_dockerfile_matches_the_repo():
    text = DOCKERFILE.read_text()
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+\s*$", text, re.MULTILINE):
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    base = re.search(r"^ARG AIRFLOW_BASE_IMAGE=apache/airflow:(\S+)-python3\.11$", text, re.MULTILINE)
    assert base, "Dockerfile must build FROM apache/airflow:<version>-python3.11 (the Python the project supports)"
    assert "pip check" in text and "-c /tmp/constraints.txt" in text and ".whl" in text
    requirements = (ROOT / "requirements.txt").read_text()
    pin = re.search(r"^apache-airflow==(\S+)$", requirements, re.MULTILINE)
    assert pin and pin.group(1) == base.group(1), \
        f"image apache/airflow:{base.group(1)} but requirements.txt pins apache-airflow=={pin and pin.group(1)}"
    # The image installs the wheel, whose dependencies are requirements.txt up to this marker.
    marker = "# tests and checks"
    assert marker in requirements.splitlines()  # the wheel depends on the pins above it (test_packaging)
    runtime = requirements.split(marker, 1)[0]
    assert "apache-airflow-providers-postgres" in runtime and "pytest" not in runtime


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or a v2 `docker-compose`; v1 predates the spec's top-level `name`."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]):
            probe = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=30)
            if probe.returncode == 0 and re.match(r"v?[2-9]\.", probe.stdout.strip()):
                return cmd
    return None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 CLI here (`docker compose config` needs no engine, only the CLI); "
                    "the Compose Specification schema test covers the file")
    proc = subprocess.run([*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
