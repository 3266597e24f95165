# Squall's container image: `squall serve` on 0.0.0.0:9000 with its data in /data.
#
#   docker build -t squall .                      # with the 'ml' extra (TensorFlow on CPU)
#   docker build -t squall --build-arg EXTRAS= .  # no ML functions: a much smaller image
#   docker run -p 9000:9000 -v squall-data:/data \
#     -e SQUALL_ROOT_USER=... -e SQUALL_ROOT_PASSWORD=... squall
#
# Not built in Squall's CI (no container engine there): docs/kubernetes.md, "The image".

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtual environment in /opt/squall -----------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Extras of pyproject.toml, comma-separated: ml (TensorFlow on CPU, the default), ml-gpu
# (TensorFlow with CUDA, instead of ml), or empty.
ARG EXTRAS=ml
# A C compiler for py-lmdb, built from source below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/squall
ENV PATH=/opt/squall/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
# LMDB with MDB_MAXKEYSIZE=0, as the Makefile builds it: keys up to ~1980 bytes instead
# of 511, which S3's 1024-byte object keys need (docs/architecture.md).
RUN CFLAGS="-DMDB_MAXKEYSIZE=0" pip install --no-cache-dir --no-binary lmdb "lmdb>=1.4"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY squall ./squall
COPY gateway ./gateway
COPY storage ./storage
COPY triggers ./triggers
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

# --- run -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# A fixed non-root uid/gid, so a Kubernetes securityContext (runAsUser, fsGroup) can name it.
RUN groupadd --system --gid 10001 squall \
    && useradd --system --uid 10001 --gid squall --no-create-home --home-dir /tmp squall \
    && mkdir /data && chown squall:squall /data
COPY --from=build /opt/squall /opt/squall
# HOME=/tmp: TensorFlow/Keras write their caches under $HOME, and the root filesystem may
# be read-only (the Helm chart makes it so, with /data and /tmp writable).
ENV PATH=/opt/squall/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 9000
# GET /_squall/health needs no credentials: 200 when storage answers, 503 otherwise (urlopen
# raises on a 503, which exits non-zero).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/_squall/health', timeout=4)"]
ENTRYPOINT ["squall"]
# squall serve refuses the development credentials on 0.0.0.0: set SQUALL_ROOT_USER and
# SQUALL_ROOT_PASSWORD.
CMD ["serve", "--host", "0.0.0.0", "--port", "9000", "--data-dir", "/data"]
