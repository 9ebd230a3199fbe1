# One image for the API and the workers; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PRIORPROBE_DATA_DIR=/data

WORKDIR /srv/priorprobe

# Dependencies first so code changes do not reinstall torch. On a GPU host install the CUDA build
# of the same torch version instead: --build-arg TORCH_INDEX=<the CUDA wheel index for your driver>.
ARG TORCH_INDEX=""
COPY pyproject.toml README.md ./
RUN if [ -n "$TORCH_INDEX" ]; then pip install "torch==2.13.0" --index-url "$TORCH_INDEX"; else pip install "torch==2.13.0"; fi

COPY app ./app
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
# The light client's package (API models, `priorprobe submit`): copied as a directory, since the
# repository's top-level priorprobe_client is a symlink to it.
COPY client/priorprobe_client ./priorprobe_client
COPY alembic.ini ./
RUN pip install ".[flower]" && useradd --create-home --uid 10001 priorprobe && mkdir -p /data && chown priorprobe /data

USER priorprobe
VOLUME ["/data"]
EXPOSE 8000
CMD ["priorprobe", "serve", "--host", "0.0.0.0", "--port", "8000"]
