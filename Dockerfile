# B12 CDS: CDS Hooks 2.0 service. Build: docker build -t b12-cds .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system cds && useradd --system --gid cds --home-dir /app --shell /usr/sbin/nologin cds

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY cds_service ./cds_service
# Same install step as the README.
RUN pip install -c constraints.txt .
# The embedded SQLite database (audit trail, feedback, replay protection): mount a volume here,
# or set CDS_DATABASE_URL to a PostgreSQL server.
ENV CDS_DATA_DIR=/var/lib/b12-cds
RUN mkdir -p /var/lib/b12-cds && chown cds:cds /var/lib/b12-cds
VOLUME ["/var/lib/b12-cds"]

USER cds
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status == 200 else 1)"

# Authentication is on by default: set CDS_PUBLIC_BASE_URL and CDS_CLIENTS_FILE (mount the file).
# Production launcher (README, "Production server"): CDS_WORKERS workers (default one per CPU
# the container sees), header/body timeouts and a per-worker connection limit.
CMD ["python", "-m", "cds_service.serve", "--host", "0.0.0.0", "--port", "8000"]
