# syntax=docker/dockerfile:1
# One image for every service (the detector, the embedder, the gallery and the HTTP gateway) and the
# facerec CLI; the command picks which one runs (the default: the gallery):
#   docker run facerec serve detector | serve embedder | serve gallery --store PATH | serve gateway
# The final stage holds the serving set only (`pip install facerec`: onnxruntime, no TensorFlow, no
# compilers) and, in FACEREC_HOME=/opt/facerec, the weights and the ONNX files the services load. Those
# are made in the `export` stage, the one stage with TensorFlow (`facerec fetch` then `facerec export`),
# so a container starts without network access, never downloads or exports anything, and a pod's
# first start stays within its memory limit.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# faiss and scikit-learn use OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The export chain: TensorFlow, Keras, tf2onnx (the `export` extra) and matplotlib (the `eval` extra: its
# sample portrait is one of the int8 calibration pictures). Fetches the weights and the data set, cuts
# the calibration crops, then exports and checks every ONNX file. Nothing of this stage but
# /opt/facerec reaches the image.
FROM base AS export
COPY . /tmp/src
# facerec-client first: the CLI's gallery calls go through it.
RUN pip install /tmp/src/clients/python '/tmp/src[export,eval]' && rm -rf /tmp/src
ENV FACEREC_HOME=/opt/facerec
RUN facerec fetch
RUN facerec export

# The serving set in its own layer, keyed on pyproject.toml only: install the project with empty
# packages, then remove it, keeping what it pulled in.
FROM base AS deps
WORKDIR /tmp/deps
COPY pyproject.toml README.md ./
RUN mkdir facerec facerec_app detector_service embedding_service gallery gateway \
    && touch facerec/__init__.py facerec_app/__init__.py detector_service/__init__.py \
       embedding_service/__init__.py gallery/__init__.py gateway/__init__.py \
    && pip install . \
    && pip uninstall -y facerec \
    && rm -rf /tmp/deps
WORKDIR /

FROM deps
COPY . /tmp/src
RUN pip install --no-deps /tmp/src/clients/python /tmp/src && rm -rf /tmp/src
ENV FACEREC_HOME=/opt/facerec
COPY --from=export /opt/facerec /opt/facerec
# Loads every copied file with the serving set alone: they match their checksums and need no TensorFlow
# (`facerec export` only verifies files that are there; it would fail here, without the extra, if one were not).
RUN facerec export

# Non-root. The weights and exported files stay root-owned and read-only; FACEREC_HOME itself is
# writable so that `facerec eval --save-threshold` can keep calibration.json there (Kubernetes mounts
# the root file system read-only: there the threshold comes with the image); /var/lib/facerec holds the
# gallery store. (The data set's folder comes out of mkdtemp as 0700: open it to everyone, read-only.)
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/facerec facerec \
    && chmod -R a+rX,go-w /opt/facerec \
    && mkdir -p /var/lib/facerec \
    && chown facerec:facerec /var/lib/facerec /opt/facerec
USER 10001:10001
WORKDIR /var/lib/facerec

# Each service serves Prometheus metrics on its own port (0 = off outside the image).
# Run by hand, every service listens on loopback only; a container's loopback is its own, so inside the
# image they listen on every interface (compose and the manifests also pass --host 0.0.0.0 explicitly).
ENV DETECTOR_METRICS_PORT=9101 \
    EMBEDDER_METRICS_PORT=9102 \
    GALLERY_METRICS_PORT=9103 \
    DETECTOR_HOST=0.0.0.0 \
    EMBEDDER_HOST=0.0.0.0 \
    GALLERY_HOST=0.0.0.0 \
    GATEWAY_HOST=0.0.0.0
EXPOSE 50051 50052 50053 8080 9101 9102 9103 9104

# The health of whichever service the container runs: `facerec health` with no address finds the
# `facerec serve SERVICE` process and asks it on its own port (--port, else its *_PORT variable, else
# its default): gRPC health for the detector, the embedder and the gallery, GET /healthz for the
# gateway. Loading the exported models takes seconds.
# `|| exit 1`: Docker reserves exit code 2, which the CLI uses for usage errors.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD facerec health --timeout 3 || exit 1

ENTRYPOINT ["facerec"]
CMD ["serve", "gallery", "--host", "0.0.0.0", "--port", "50053", "--store", "/var/lib/facerec/gallery.sqlite"]
