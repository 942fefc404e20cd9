# Multi-stage build of railcast: the server, the train simulator and the web console on a slim
# runtime image.
FROM node:20-bookworm AS web
WORKDIR /src/web-client
COPY web-client/package.json web-client/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web-client/ ./
RUN npm run build

FROM rust:1-bookworm AS build
WORKDIR /src
# g++: openh264's bundled C++ sources; libopus-dev and pkg-config: the simulator's Opus encoder
# links the system libopus (the opus crate would otherwise need cmake to build its own).
RUN apt-get update && apt-get install -y --no-install-recommends g++ libopus-dev pkg-config && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bins \
 && cp target/release/railcast-server target/release/railcast-train-sim /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libopus0 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 railcast && mkdir -p /run/railcast && chown railcast /run/railcast
COPY --from=build /usr/local/bin/railcast-server /usr/local/bin/railcast-train-sim /usr/local/bin/
COPY --from=web /src/web-client/dist /usr/share/railcast/web
USER railcast
ENV RAILCAST_HTTP_ADDR=0.0.0.0:8080 RAILCAST_QUIC_ADDR=0.0.0.0:4433 RAILCAST_WEB_ROOT=/usr/share/railcast/web
# WebRTC: every session on UDP 8189. Bound on every interface, so the candidates carry the
# advertised address: set RAILCAST_WEBRTC_ADVERTISED_IP to the one clients reach.
ENV RAILCAST_WEBRTC_BIND_IP=0.0.0.0 RAILCAST_WEBRTC_UDP_PORT=8189 RAILCAST_WEBRTC_ADVERTISED_IP=127.0.0.1
EXPOSE 8080/tcp 4433/udp 8189/udp
ENTRYPOINT ["railcast-server"]
