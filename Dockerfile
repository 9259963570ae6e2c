# widget-server: the service the release suite ships.
#
# Builds with the classic builder as well as BuildKit: no RUN --mount, no
# heredocs, no COPY --chmod/--link. The base only needs `python3` on the PATH
# (no pip, no `python` alias), so a locally made Debian base works too:
#   docker build --build-arg BASE_IMAGE=local/python-base:bookworm -t widget-server:dev .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

# Unbuffered: log lines reach `docker logs` as they are written.
# No bytecode: the code is read-only to the runtime user, and nothing should
# be written inside the container anyway.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app

WORKDIR /app

# Numeric UID:GID, so no /etc/passwd entry (nor useradd) is needed and
# Kubernetes' runAsNonRoot can verify it. The code below stays owned by root,
# so the service cannot modify itself.
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# Slim bases have no curl; python3 is always there. The check is a script of the
# standard library's socket alone, run by its path (-I: nothing but the standard library
# on its path): GET /healthz, 0 on a 200. PORT is honoured in case the container is run
# with another one.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "-I", "/app/widget_server/healthcheck.py"]

# Exec form: python3 is PID 1 and receives `docker stop`'s SIGTERM directly. Declared
# before the COPY, like every setting that does not change with the code: the classic
# builder makes a container and a commit for each instruction after a changed layer.
CMD ["python3", "-m", "widget_server"]

# Everything above is cached across code changes; a change under
# widget_server/ rebuilds from this layer on. Only the package is copied.
COPY widget_server/ /app/widget_server/

# Build metadata: declared after the last COPY/RUN, because a build argument whose value
# changes (BUILD_DATE does on every build) invalidates the cache of every RUN after its
# ARG; and in three instructions, one ARG, one ENV, one LABEL, because each is a build
# step. The release suite fills these labels through their build arguments (it finds
# them here), so it adds no --label, hence no build step, of its own.
ARG BASE_IMAGE APP_VERSION=dev VCS_REF="" BUILD_DATE="" SOURCE_URL="" BASE_DIGEST="" \
    RELEASE_FINGERPRINT="" RELEASE_CONTEXT="" RELEASE_DOCKERFILE="" RELEASE_BASE="" \
    RELEASE_BUILD_ARGS=""
ENV APP_VERSION=${APP_VERSION}
LABEL org.opencontainers.image.title="widget-server" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}" \
      io.ecr-release.fingerprint="${RELEASE_FINGERPRINT}" \
      io.ecr-release.fingerprint.context="${RELEASE_CONTEXT}" \
      io.ecr-release.fingerprint.dockerfile="${RELEASE_DOCKERFILE}" \
      io.ecr-release.fingerprint.base="${RELEASE_BASE}" \
      io.ecr-release.fingerprint.build-args="${RELEASE_BUILD_ARGS}"
