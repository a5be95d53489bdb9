# The Squals Action image: the squals package and git on a slim Python, nothing else.
# Stage 1 builds the wheel (hatchling is fetched there and stays there); stage 2 installs it with no caches.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY squals_action ./squals_action
COPY examples/shop ./examples/shop
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
ENV SQUALS_ACTION_CONTAINER=1
# git: the state branch and the diff the gates look at. The workspace GitHub mounts belongs to another
# user, so git must be told to trust it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels /root/.cache
ENTRYPOINT ["squals-action"]
