# Example image: the tus upload server of examples/node-http.ts with Etcd3Locker.
# Used by docker-compose.yml; build it alone with `docker build -t tus-etcd3-locker-example .`
FROM node:20-bookworm-slim

WORKDIR /app
ENV npm_config_update_notifier=false

# Dependencies first, so that editing the sources does not reinstall them. Dev dependencies are
# kept on purpose: the example runs from TypeScript with tsx.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY . .
# Compiling the library fails the build on any type error before an image is produced.
RUN npm run build \
  && mkdir -p /data/files \
  && chown node:node /data/files

# The node image's unprivileged user; /data/files is the only place it writes.
USER node

ENV HOST=0.0.0.0 \
    PORT=1080 \
    FILES_DIR=/data/files \
    PREFIX=/tusd
EXPOSE 1080
VOLUME ["/data/files"]

# The example closes on SIGTERM: it stops accepting requests and revokes its etcd session, so
# its locks are free at once instead of after the lease TTL.
STOPSIGNAL SIGTERM
# Slim images have no curl: ask node itself. /health answers 503 while the etcd session is down.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 1080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node loads tsx as a module hook: one process, so SIGTERM reaches the server directly instead of
# being relayed through npx and the tsx launcher.
CMD ["node", "--import", "tsx", "examples/node-http.ts"]
