"""gRPC helpers for the integration tests and the gRPC benchmark: the generated Python
modules of our protos, stubs and the bearer metadata, with the same grpcio client that
strategies and operators use.

The protos in proto/ are compiled with grpc_tools.protoc (grpcio-tools, from the venv) once
per session into a cache directory under the build directory, keyed by the protos' content
and the grpcio-tools version, so an edited proto is recompiled and an unchanged one is not.
A fresh compile goes to a temporary directory first and is renamed into place, so two
processes compiling at once never see half a module.

grpc.health.v1 is compiled under the package directory `himari_health/` (its proto
package, and so every gRPC method path, stays grpc.health.v1): a generated top-level
`grpc/` package would shadow grpcio's own `grpc` package.

Usage:
    from himari_grpc import modules, control_stub, health_stub, bearer
    m = modules()
    st = control_stub(target).GetStatus(m.control_pb2.GetStatusRequest(), timeout=5)
    control_stub(target).Pause(m.control_pb2.PauseRequest(), metadata=bearer(token))

Must never: write into the source tree, or print a token.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import types

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
CONTROL_PROTO = PROTO_DIR / "himari/v1/control.proto"
FEATURES_PROTO = PROTO_DIR / "himari/v1/features.proto"
HEALTH_PROTO = PROTO_DIR / "grpc/health/v1/health.proto"
# Where the health proto is placed for compiling (see the module docstring).
HEALTH_PACKAGE_DIR = "himari_health/v1"

CONTROL_SERVICE = "himari.v1.ControlService"
HEALTH_SERVICE = "grpc.health.v1.Health"

_lock = threading.Lock()


def _build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("HIMARI_BUILD_DIR", ROOT / "build"))


def _cache_key() -> str:
    import grpc_tools  # the version of the compiler is part of what we cache

    h = hashlib.sha256()
    for p in (CONTROL_PROTO, FEATURES_PROTO, HEALTH_PROTO):
        h.update(p.read_bytes())
    h.update(getattr(grpc_tools, "__version__", "").encode())
    h.update(grpc.__version__.encode())
    return h.hexdigest()[:16]


def _compile_into(out: pathlib.Path) -> None:
    """Run grpc_tools.protoc for both protos into out (a fresh directory)."""
    from grpc_tools import protoc

    try:
        import importlib.resources as resources
        well_known = str(resources.files("grpc_tools") / "_proto")
    except (ImportError, AttributeError):  # older Pythons
        import pkg_resources  # type: ignore

        well_known = pkg_resources.resource_filename("grpc_tools", "_proto")
    src = out / "_src"
    (src / HEALTH_PACKAGE_DIR).mkdir(parents=True)
    shutil.copyfile(HEALTH_PROTO, src / HEALTH_PACKAGE_DIR / "health.proto")
    jobs = [
        (str(PROTO_DIR), str(CONTROL_PROTO)),
        (str(PROTO_DIR), str(FEATURES_PROTO)),
        (str(src), str(src / HEALTH_PACKAGE_DIR / "health.proto")),
    ]
    for include, proto in jobs:
        args = ["grpc_tools.protoc", f"-I{include}", f"-I{well_known}",
                f"--python_out={out}", f"--grpc_python_out={out}", proto]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}) on {proto}")
    shutil.rmtree(src)


def proto_out_dir() -> pathlib.Path:
    """The directory holding the generated modules, compiling them when needed."""
    base = _build_dir() / "python-proto"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = pathlib.Path(tempfile.gettempdir()) / "himari-python-proto"
        base.mkdir(parents=True, exist_ok=True)
    final = base / _cache_key()
    if (final / "himari/v1/control_pb2_grpc.py").exists():
        return final
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".compile-", dir=base))
    try:
        _compile_into(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "himari/v1/control_pb2_grpc.py").exists():
                raise
            # Another process finished first; theirs is the same.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@functools.lru_cache(maxsize=1)
def _load() -> types.SimpleNamespace:
    out = proto_out_dir()
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return types.SimpleNamespace(
        control_pb2=importlib.import_module("himari.v1.control_pb2"),
        control_pb2_grpc=importlib.import_module("himari.v1.control_pb2_grpc"),
        features_pb2=importlib.import_module("himari.v1.features_pb2"),
        features_pb2_grpc=importlib.import_module("himari.v1.features_pb2_grpc"),
        health_pb2=importlib.import_module("himari_health.v1.health_pb2"),
        health_pb2_grpc=importlib.import_module("himari_health.v1.health_pb2_grpc"),
    )


def modules() -> types.SimpleNamespace:
    """The generated modules: .control_pb2(_grpc), .features_pb2(_grpc), .health_pb2(_grpc)."""
    with _lock:
        return _load()


def channel(target: str, options: list | None = None) -> grpc.Channel:
    """An insecure channel to target ("127.0.0.1:9081"); close it (or use `with`)."""
    return grpc.insecure_channel(target, options=options or [])


def _as_channel(target_or_channel) -> grpc.Channel:
    if isinstance(target_or_channel, str):
        return channel(target_or_channel)
    return target_or_channel


def control_stub(target_or_channel):
    """A himari.v1.ControlService stub on a target string or an existing channel."""
    return modules().control_pb2_grpc.ControlServiceStub(_as_channel(target_or_channel))


def features_stub(target_or_channel):
    """A himari.v1.FeatureService stub on a target string or an existing channel."""
    return modules().features_pb2_grpc.FeatureServiceStub(_as_channel(target_or_channel))


def health_stub(target_or_channel):
    """A grpc.health.v1.Health stub on a target string or an existing channel."""
    return modules().health_pb2_grpc.HealthStub(_as_channel(target_or_channel))


def bearer(token: str) -> list[tuple[str, str]]:
    """Call metadata carrying the token, for mutating ControlService methods."""
    return [("authorization", f"Bearer {token}")]


def read_token(path: str | os.PathLike) -> str:
    """A token file's content without one trailing newline (as himarictl reads it)."""
    text = pathlib.Path(path).read_text()
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text


def serving_status_name(value: int) -> str:
    """1 -> "SERVING" and so on."""
    return modules().health_pb2.HealthCheckResponse.ServingStatus.Name(value)


def state_name(value: int) -> str:
    """2 -> "SERVICE_STATE_RUNNING" and so on."""
    return modules().control_pb2.ServiceState.Name(value)


def wait_for_health(target: str, want: str = "SERVING", service: str = "",
                    timeout: float = 30.0) -> str:
    """Poll Health/Check until it answers `want`; returns the last status seen.

    Raises TimeoutError (naming the last status or error) when it does not in time.
    """
    m = modules()
    deadline = time.monotonic() + timeout
    last = "no answer"
    with channel(target) as ch:
        stub = health_stub(ch)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(m.health_pb2.HealthCheckRequest(service=service), timeout=2)
                last = serving_status_name(resp.status)
                if last == want:
                    return last
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            time.sleep(0.1)
    raise TimeoutError(f"{target}: health of {service!r} is {last}, not {want}, after {timeout}s")
