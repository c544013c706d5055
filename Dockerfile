# syntax=docker/dockerfile:1
# One image for every service (the detector, the embedder, the gallery and the HTTP gateway) and the
# facerec CLI; the command picks which one runs (the default: the gallery):
#   docker run facerec serve detector | serve embedder | serve gallery --store PATH | serve gateway
# The FaceNet weights are fetched and hash-checked at build time into FACEREC_HOME=/opt/facerec,
# so a container starts without network access and never downloads anything.

FROM python:3.11-slim AS deps
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# faiss and scikit-learn use OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/deps
# The dependencies (TensorFlow is most of the image) in their own layer, keyed on pyproject.toml only:
# install the project with empty packages, then remove it, keeping what it pulled in.
COPY pyproject.toml README.md ./
RUN mkdir facerec facerec_app detector_service embedding_service gallery \
    && touch facerec/__init__.py facerec_app/__init__.py detector_service/__init__.py embedding_service/__init__.py gallery/__init__.py \
    && pip install . \
    && pip uninstall -y facerec \
    && rm -rf /tmp/deps
WORKDIR /

# The weights, keyed on the shared package and the CLI only, so a change to a service does not download them again.
FROM deps AS weights
COPY pyproject.toml README.md /tmp/src/
COPY facerec /tmp/src/facerec
COPY facerec_app /tmp/src/facerec_app
# facerec-client: the CLI's gallery calls go through it (grpcio and protobuf are in the deps layer).
COPY clients/python /tmp/src/clients/python
RUN pip install --no-deps /tmp/src/clients/python /tmp/src
ENV FACEREC_HOME=/opt/facerec
# The services are not installed in this stage: the final stage's fetch cuts the int8 calibration crops.
RUN facerec fetch --no-calibration

FROM deps
COPY . /tmp/src
RUN pip install --no-deps /tmp/src/clients/python /tmp/src && rm -rf /tmp/src
ENV FACEREC_HOME=/opt/facerec
COPY --from=weights /opt/facerec /opt/facerec
# Verifies the copied weights' sha256 with the installed CLI; it downloads nothing when they are there.
RUN facerec fetch

# Non-root. The weights stay root-owned and read-only; FACEREC_HOME itself is writable so that
# `facerec eval --save-threshold` can keep calibration.json there; /var/lib/facerec holds the gallery store.
# (The data set's folder comes out of mkdtemp as 0700: open it to everyone, read-only.)
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
# gateway. Loading the models takes up to a minute or two.
# `|| exit 1`: Docker reserves exit code 2, which the CLI uses for usage errors.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD facerec health --timeout 3 || exit 1

ENTRYPOINT ["facerec"]
CMD ["serve", "gallery", "--host", "0.0.0.0", "--port", "50053", "--store", "/var/lib/facerec/gallery.sqlite"]
