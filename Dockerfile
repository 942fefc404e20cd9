# Multi-stage build of railcast: the server, the train simulator, the train agent and the web
# console on a slim runtime image. README, "Deploying", lists the layers and their sizes;
# scripts/check-deploy.sh checks this file.

# The console, built with Node 24 (the Active LTS).
FROM node:24-bookworm-slim AS web
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
# The dependencies, in a layer of their own: the lock file, every workspace crate's manifest and
# the vendored crates, with each crate's sources stubbed out. A change to railcast's own sources
# finds this layer cached; a change to a manifest, Cargo.lock or third_party/ rebuilds it.
COPY Cargo.toml Cargo.lock ./
COPY protocol/Cargo.toml protocol/
COPY server/Cargo.toml server/
COPY uplink/Cargo.toml uplink/
COPY train-sim/Cargo.toml train-sim/
COPY train-agent/Cargo.toml train-agent/
COPY bench/Cargo.toml bench/
COPY testkit/Cargo.toml testkit/
COPY third_party/ third_party/
# The workspace members (Cargo.toml), and what is built: `dist` is the release profile without
# symbols or debug info (Cargo.toml says why it is a profile of its own).
ARG CRATES="protocol server uplink train-sim train-agent bench testkit"
ARG BUILD="--profile dist --locked -p railcast-server -p railcast-train-sim -p railcast-train-agent"
RUN for crate in $CRATES; do \
      mkdir "$crate/src" && : > "$crate/src/lib.rs" && echo 'fn main() {}' > "$crate/src/main.rs"; \
    done \
 && cargo build $BUILD \
 && for crate in $CRATES; do rm -r "$crate/src"; done
COPY . .
# Make the sources newer than the stubs' build, whatever times the build context carries.
RUN find $CRATES -name '*.rs' -exec touch {} + \
 && cargo build $BUILD \
 && cp target/dist/railcast-server target/dist/railcast-train-sim target/dist/railcast-train-agent /usr/local/bin/

FROM debian:bookworm-slim
# libopus0: the simulator's Opus encoder. No curl: the health check is the server's own
# `railcast-server healthcheck`.
RUN apt-get update && apt-get install -y --no-install-recommends libopus0 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/railcast railcast \
 && install -d -o railcast -g railcast -m 0750 /run/railcast /var/lib/railcast
# The CA bundle for `--ca system` (simulator, agent), 0.2 MB: Debian's ca-certificates package
# would bring openssl and libssl3 (8.7 MB) along for its own scripts.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=web /src/web-client/dist /usr/share/railcast/web
COPY --from=build /usr/local/bin/railcast-server /usr/local/bin/railcast-train-sim /usr/local/bin/railcast-train-agent /usr/local/bin/
USER railcast
WORKDIR /var/lib/railcast
# These override a config file's keys (RAILCAST_CONFIG): set those settings here, or unset them.
ENV RAILCAST_HTTP_ADDR=0.0.0.0:8080 RAILCAST_QUIC_ADDR=0.0.0.0:4433 RAILCAST_WEBTRANSPORT_ADDR=0.0.0.0:4434 \
    RAILCAST_WEB_ROOT=/usr/share/railcast/web
# WebRTC: every session on UDP 8189. Bound on every interface, so the candidates carry the
# advertised address: set RAILCAST_WEBRTC_ADVERTISED_IP to the one clients reach.
ENV RAILCAST_WEBRTC_BIND_IP=0.0.0.0 RAILCAST_WEBRTC_UDP_PORT=8189 RAILCAST_WEBRTC_ADVERTISED_IP=127.0.0.1
EXPOSE 8080/tcp 4433/udp 4434/udp 8189/udp
# GET /healthz on the HTTP listener's loopback address, with the server's own configuration; it
# gives up after 3 s itself (--timeout), so Docker's timeout is longer and the reason is logged.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["railcast-server", "healthcheck"]
ENTRYPOINT ["railcast-server"]
