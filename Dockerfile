# A Durably app in a container. Build from the directory that holds your app (app.py here; change APP to match):
#
#   docker build -t my-durably-app .
#   embedded (engine + SQLite in the container, data on a volume):
#     docker run -p 8080:8080 -p 9070:9070 -v durably-data:/data my-durably-app
#   endpoint (a Restate deployment behind a Restate cluster, no local state):
#     docker run -p 9080:9080 -e DURABLY_MODE=endpoint -e DURABLY_WORKERS=2 my-durably-app
#
# The image runs one process; SIGTERM drains it (embedded: a clean store shutdown; endpoint: running attempts
# finish within the graceful timeout, the rest are retried by Restate).
FROM python:3.12-slim

ARG DURABLY_VERSION=0.1.0

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP=app.py \
    DURABLY_MODE=embedded \
    DURABLY_WORKERS=1

RUN useradd --create-home --uid 10001 durably \
    && mkdir -p /data /app \
    && chown durably:durably /data

WORKDIR /app
# Durably with hypercorn (endpoint mode); pin the version you test with.
RUN pip install "durably[deploy]==${DURABLY_VERSION}"
COPY --chown=durably:durably . /app
RUN if [ -f requirements.txt ]; then pip install -r requirements.txt; fi

USER 10001
VOLUME ["/data"]
EXPOSE 8080 9070 9080

# Exec form through sh so $DURABLY_MODE picks the command; `exec` hands PID 1 (and SIGTERM) to durably.
CMD ["sh", "-c", "if [ \"$DURABLY_MODE\" = endpoint ]; then exec durably endpoint \"$APP\" --host 0.0.0.0 --port 9080 --workers \"$DURABLY_WORKERS\"; else exec durably serve \"$APP\" --host 0.0.0.0 --data-dir /data; fi"]
