# upload-gateway container image: `docker build -t upload-gateway .` (docker-compose.yml builds it too).
# Stage 1 builds the project wheel (what tests/test_deploy.py builds with `pip wheel --no-deps .`);
# stage 2 installs it with its dependencies (all published as wheels: no compiler needed) and runs it
# as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/etc/upload-gateway/gateway.toml \
    GATEWAY_SERVER_LISTEN=0.0.0.0:8080 \
    GATEWAY_STORE_URL=sqlite:////data/gateway.db \
    GATEWAY_TOKENS_SECRET_FILE=/data/secret.key \
    GATEWAY_UPSTREAM_DATA_DIR=/data/packages
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /data --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir -p /data /etc/upload-gateway \
    && chown gateway:gateway /data
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
COPY config/gateway.toml /etc/upload-gateway/gateway.toml
# `upload-gateway` before pip's: it passes a PostgreSQL password from the file PGPASSWORD_FILE names to libpq
# (docker-compose.yml), for `serve` and for every command run with `docker exec`.
COPY --chmod=0755 docker/upload-gateway /opt/upload-gateway/bin/upload-gateway
ENV PATH=/opt/upload-gateway/bin:$PATH
USER gateway:gateway
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# Ready = the store and the package index answer. slim has no curl: Python's urllib, without proxies,
# on the port of GATEWAY_SERVER_LISTEN. An HTTP error status or a refused connection exits 1 (unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; port = os.environ.get('GATEWAY_SERVER_LISTEN', ':8080').rpartition(':')[2]; r.build_opener(r.ProxyHandler({})).open(f'http://127.0.0.1:{port}/-/ready', timeout=4)"]
ENTRYPOINT ["upload-gateway"]
CMD ["serve"]
