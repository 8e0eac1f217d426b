# Builds and runs one MerkleKV node as the unprivileged `node` user. Data lives in the /data volume.
#   docker build -t merkle-kv .
#   docker run -p 7878:7878 -v merkle-kv-data:/data merkle-kv
# docker-compose.yml runs three of these with Mosquitto.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY configs ./configs
RUN mkdir -p /data /backups && chown node:node /data /backups
# BACKUP and scheduled backups go to their own volume: a backup inside /data (the data directory) is refused.
VOLUME /data /backups
# 7878: the client port; 9178: /metrics, /health and /ready.
EXPOSE 7878 9178
# Listen on all interfaces inside the container; publish the ports with `docker run -p`.
ENV MERKLE_KV_NETWORK_BIND_ADDRESS=0.0.0.0 \
    MERKLE_KV_STORAGE_PATH=/data \
    MERKLE_KV_STORAGE_BACKUP_PATH=/backups \
    MERKLE_KV_LOGGING_FORMAT=json \
    MERKLE_KV_METRICS_ENABLED=true \
    MERKLE_KV_METRICS_BIND_ADDRESS=0.0.0.0
USER node
# /health: 200 while the node serves and (with replication) reaches its broker. No curl in the image: node's fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9178/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--config", "configs/single.toml"]
