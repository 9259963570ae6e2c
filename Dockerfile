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
# Slim bases have no curl; python3 is always there. PORT is honoured in case
# the container is run with another one.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]

# Everything above is cached across code changes; a change under
# widget_server/ rebuilds from this layer on. Only the package is copied.
COPY widget_server/ /app/widget_server/

# Build metadata is declared after the last COPY/RUN on purpose: with the
# classic builder a build argument whose value changes (BUILD_DATE changes on
# every build) invalidates the cache of every RUN that follows its ARG line.
ARG APP_VERSION=dev
ARG VCS_REF=""
ARG BUILD_DATE=""
ARG SOURCE_URL=""
ENV APP_VERSION=${APP_VERSION}
LABEL org.opencontainers.image.title="widget-server" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}"

# Exec form: python3 is PID 1 and receives `docker stop`'s SIGTERM directly.
CMD ["python3", "-m", "widget_server"]
