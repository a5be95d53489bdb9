# The Squals Action image: the squals package (with Locust, its `load` extra) and git on a slim Python.
# Stage 1 builds the wheel (hatchling is fetched there and stays there); stage 2 installs it with no caches.
# Released images are built from this file by .github/workflows/release.yml and pushed to
# ghcr.io/squals/action:X.Y.Z, the image action.yml names; CI builds it on every push.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md ./
COPY schemas ./schemas
COPY squals_action ./squals_action
COPY examples/shop ./examples/shop
COPY examples/workflows ./examples/workflows
COPY examples/shop-aws/infra ./examples/shop-aws/infra
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
ENV SQUALS_ACTION_CONTAINER=1
# git: the state branch and the diff the gates look at. The workspace GitHub mounts belongs to another
# user, so git must be told to trust it. Debian's versions are not pinned (DL3008): a stable release only
# replaces them with security fixes, and an exact pin would stop building once the mirror drops it; the base
# image's tag pins the release, and a released image is pushed once and never rebuilt.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'
COPY --from=build /wheels /wheels
# The `load` extra: Locust for the squals file's load_tests (run as a subprocess, never imported by squals).
# DL3013: the wheel is the one built above; its dependencies' bounds are pyproject.toml's, as before.
# hadolint ignore=DL3013
RUN wheel="$(echo /wheels/*.whl)" \
    && pip install --no-cache-dir "${wheel}[load]" \
    && rm -rf /wheels /root/.cache
ENTRYPOINT ["squals-action"]
