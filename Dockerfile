# Builds and runs one MerkleKV node. Data lives in the /data volume.
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
RUN mkdir -p /data && chown node:node /data
VOLUME /data
EXPOSE 7878
# Listen on all interfaces inside the container; publish the port with `docker run -p 7878:7878`.
ENV MERKLE_KV_NETWORK_BIND_ADDRESS=0.0.0.0 \
    MERKLE_KV_STORAGE_PATH=/data \
    MERKLE_KV_LOGGING_FORMAT=json
USER node
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["--config", "configs/single.toml"]
