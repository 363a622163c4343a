# Upshift service image: migrations at start, then uvicorn; health-checked on /healthz.
# Production: UPSHIFT_DATABASE_URL (PostgreSQL), UPSHIFT_TOKEN_SECRET (the same in every replica)
# and UPSHIFT_WORKERS (worker processes per container; more than 1 needs PostgreSQL).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 upshift
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY migrations ./migrations
COPY pricing_catalog ./pricing_catalog
RUN pip install . && mkdir -p /app/var && chown upshift:upshift /app/var

USER upshift
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"

CMD ["sh", "-c", "upshift migrate && exec upshift serve --host 0.0.0.0 --port 8000"]
