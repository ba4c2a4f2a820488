# One image for every smartq process; compose.yaml picks the subcommand.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY smartq ./smartq
COPY api ./api
COPY scheduler ./scheduler
COPY worker ./worker
COPY logger ./logger
COPY models ./models
COPY migrations ./migrations
COPY bench ./bench
RUN pip install --no-cache-dir .
RUN useradd --create-home smartq
USER smartq
ENTRYPOINT ["smartq"]
