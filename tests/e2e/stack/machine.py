"""What the stack needs from the machine: Debian packages, a base image, a registry image,
TLS files, htpasswd.

Each function makes one thing and keeps no record; undoing is the caller's job (the
images stay in the engine on purpose: making the base takes about a minute). The two
images are what a non-root user needs for the sandbox tests too: root makes them
(``python -m tests.e2e.stack images``), the tests only check that they are there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import StackError, StackUnavailable
from .processes import last_line, log, run

# The images every e2e test builds on: Debian bookworm with python3 (nothing can be pulled
# here), and a registry image laid out like Docker Hub's registry:2 (the sandbox's).
BASE_IMAGE = "local/python-base:bookworm"
REGISTRY_IMAGE = "local/registry:2"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")

# binary -> Debian package that provides it
REQUIRED_BINARIES = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
}


def ensure_packages() -> None:
    """Install the Debian packages whose binaries are missing (apt-get update once, first)."""
    missing = sorted({pkg for binary, pkg in REQUIRED_BINARIES.items() if not shutil.which(binary)})
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise StackUnavailable(
            f"missing packages {' '.join(missing)} and no apt-get to install them"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing Debian packages: {' '.join(missing)}")
    upd = run(["apt-get", "update"], env=env)
    if upd.returncode != 0:
        raise StackUnavailable(f"apt-get update failed: {last_line(upd.stderr)}")
    inst = run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    if inst.returncode != 0:
        raise StackUnavailable(
            f"apt-get install {' '.join(missing)} failed: {last_line(inst.stderr or inst.stdout)}"
        )
    still = sorted(binary for binary in REQUIRED_BINARIES if not shutil.which(binary))
    if still:
        raise StackUnavailable(f"still missing after install: {' '.join(still)}")


# ---------------------------------------------------------------- apt sources


def debian_mirror() -> str | None:
    """The machine's own Debian mirror, read from its apt sources (None: debootstrap's default)."""
    sources: list[Path] = [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        mirror = _deb822_mirror(text) if path.suffix == ".sources" else _one_line_mirror(text)
        if mirror:
            return mirror
    return None


def _deb822_mirror(text: str) -> str | None:
    """The first bookworm ``deb`` URI ending in /debian in a deb822 ``.sources`` file."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        suites = fields.get("suites", "").split()
        if "deb" in fields.get("types", "").split() and "bookworm" in suites:
            for uri in fields.get("uris", "").split():
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return None


def _one_line_mirror(text: str) -> str | None:
    """The first ``deb URI bookworm ...`` line's URI ending in /debian (options skipped)."""
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        parts = [p for p in parts if not p.startswith("[")]
        if (
            len(parts) >= 3
            and parts[0] == "deb"
            and parts[2] == "bookworm"
            and parts[1].rstrip("/").endswith("/debian")
        ):
            return parts[1]
    return None


# ---------------------------------------------------------------- the base image


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def remove_rootfs(path: Path) -> None:
    """Remove a debootstrap target, unmounting anything an interrupted run left mounted in it."""
    if not path.exists():
        return
    for target in _mounts_under(path):
        run(["umount", "-l", target])
    if _mounts_under(path):
        raise StackError(f"{path} still has mounts; not removing it")
    shutil.rmtree(path, ignore_errors=True)


def image_exists(image: str) -> bool:
    return run(["docker", "image", "inspect", image]).returncode == 0


def ensure_base_image(image: str, work_dir: Path) -> None:
    """Make a Debian bookworm image with python3 (nothing can be pulled), unless it exists."""
    if image_exists(image):
        return
    rootfs = work_dir / "rootfs"
    remove_rootfs(rootfs)
    argv = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(rootfs)]
    mirror = debian_mirror()
    if mirror:
        argv.append(mirror)
    log(f"building base image {image} with debootstrap (about a minute)")
    try:
        boot = run(argv)
        if boot.returncode != 0:
            raise StackError(f"debootstrap failed: {last_line(boot.stdout + boot.stderr)}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
        )
        imp = subprocess.run(
            ["docker", "import", "-", image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise StackError(f"docker import of the rootfs failed: {last_line(imp.stderr)}")
    finally:
        remove_rootfs(rootfs)
    check = run(["docker", "run", "--rm", image, "python3", "-c", "print(1)"], timeout=120)
    if check.stdout.strip() != "1":
        raise StackError(f"base image {image} cannot run python3: {last_line(check.stderr)}")


# ---------------------------------------------------------------- the registry image

# registry:2's own config (distribution's cmd/registry/config-example.yml): filesystem
# storage at /var/lib/registry, plain HTTP on :5000; the sandbox overrides by environment.
REGISTRY_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

REGISTRY_DOCKERFILE = """\
FROM {base}
COPY registry /bin/registry
COPY config.yml /etc/docker/registry/config.yml
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/bin/registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
"""


def ensure_registry_image(image: str = REGISTRY_IMAGE, base: str = BASE_IMAGE) -> None:
    """Make an image laid out like Docker Hub's ``registry:2`` (which cannot be pulled here),
    unless it exists: Debian's ``docker-registry`` binary (CNCF distribution 2.8) at
    ``/bin/registry`` in ``base``, its config at ``/etc/docker/registry/config.yml``.
    The binary links only libc, which the bookworm base has."""
    if image_exists(image):
        return
    if not REGISTRY_BINARY.exists():
        raise StackUnavailable(
            f"no {REGISTRY_BINARY} to build {image} from (apt-get install docker-registry)"
        )
    if not image_exists(base):
        raise StackUnavailable(f"the base image {base} is missing: make it first")
    log(f"building registry image {image} from {REGISTRY_BINARY}")
    with tempfile.TemporaryDirectory(prefix="e2e-registry-image-") as tmp:
        context = Path(tmp)
        shutil.copy2(REGISTRY_BINARY, context / "registry")
        (context / "config.yml").write_text(REGISTRY_CONFIG)
        (context / "Dockerfile").write_text(REGISTRY_DOCKERFILE.format(base=base))
        built = run(["docker", "build", "-q", "-t", image, str(context)], timeout=300)
    if built.returncode != 0:
        raise StackError(f"building {image} failed: {last_line(built.stderr or built.stdout)}")
    check = run(["docker", "run", "--rm", "--entrypoint", "/bin/registry", image, "--version"])
    if check.returncode != 0:
        raise StackError(f"registry image {image} cannot run: {last_line(check.stderr)}")


def ensure_images(base: str = BASE_IMAGE, registry: str = REGISTRY_IMAGE) -> None:
    """The base image and the registry image, made (as root) when missing."""
    if image_exists(base) and image_exists(registry):
        return
    ensure_packages()
    with tempfile.TemporaryDirectory(prefix="e2e-base-image-") as work:
        ensure_base_image(base, Path(work))
    ensure_registry_image(registry, base)


# ---------------------------------------------------------------- TLS and htpasswd


def make_tls(dir_: Path, host: str) -> tuple[Path, Path, Path]:
    """A local CA and a server certificate for ``host`` signed by it; returns (ca, cert, key)."""
    ca_key, ca_crt = dir_ / "ca.key", dir_ / "ca.crt"
    key, csr, crt, ext = dir_ / "server.key", dir_ / "server.csr", dir_ / "server.crt", dir_ / "ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt),
         "-days", "30", "-subj", "/CN=ecr-e2e-stack local CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
         "-subj", f"/CN={host}"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(crt), "-days", "30", "-extfile", str(ext)],
    ]  # fmt: skip
    ext.write_text(
        f"subjectAltName=DNS:{host}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    for argv in steps:
        res = run(argv)
        if res.returncode != 0:
            raise StackError(f"openssl failed ({argv[1]}): {last_line(res.stderr)}")
    return ca_crt, crt, key


def htpasswd_line(user: str, password: str) -> str:
    res = run(["htpasswd", "-Bbn", user, password])
    if res.returncode != 0:
        raise StackError(f"htpasswd failed: {last_line(res.stderr)}")
    return res.stdout.strip() + "\n"
