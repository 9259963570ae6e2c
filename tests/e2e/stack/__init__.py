"""A local stand-in for AWS ECR: a real Docker engine, moto's server and a real registry.

The product under test runs unchanged against it: boto3 reaches moto through
``AWS_ENDPOINT_URL``, and docker pushes to ``<account>.dkr.ecr.<region>.amazonaws.com``,
which ``/etc/hosts`` points at a registry on ``127.0.0.1:443`` serving a
certificate from a local CA that docker trusts through ``/etc/docker/certs.d``.

Usable as a package (``Stack(...).up()`` / ``.down()``, used by ``conftest.py``)
and as a script, from the repository's root::

    python -m tests.e2e.stack up   [--state-dir DIR]   # prints the stack's facts as JSON
    python -m tests.e2e.stack down [--state-dir DIR]   # tears down only what ``up`` started
    python -m tests.e2e.stack images                   # only the base and registry images

Everything ``up`` starts or changes is recorded in ``<state dir>/stack.json`` as it
happens, so ``down`` (or the next ``up``, after an interrupted run) can undo exactly
that: the processes it started (dockerd only if it was not already running), the
line it added to ``/etc/hosts`` and the CA it put under ``/etc/docker/certs.d``.

Modules: ``core`` (the Stack), ``state`` (what it records), ``services`` (dockerd, moto,
the registry), ``system_files`` (/etc/hosts, certs.d), ``machine`` (Debian packages,
base image, TLS, htpasswd), ``processes`` (pids, ports, the lock).

Only the standard library is used; needs root, and installs missing Debian
packages (docker.io, debootstrap, docker-registry, apache2-utils, openssl).
"""

from .core import Stack
from .errors import StackError, StackUnavailable
from .state import StackState

__all__ = ["Stack", "StackError", "StackState", "StackUnavailable"]
